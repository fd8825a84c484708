# Two entry points for a fresh machine: `make demo` and `make test` (both idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup system demo serve test bench image mutation clean

# Debian packages: the sandbox registry, skopeo (the IIB baseline in benches), git's http-backend,
# chromium (the UI check in tests/deploy), podman + buildah + mmdebstrap + runc and friends (the worker
# image and its pods in tests/runtime), MIT Kerberos (the KDC of tests/iib; libkrb5-dev builds python
# gssapi, iib-api's SPNEGO check), PostgreSQL (the test suite's Prefect servers, tests/postgres.py).
# Installed only when a binary is missing (also looked for in /usr/sbin and PostgreSQL's versioned bin/).
APT_PKGS := docker-registry skopeo git chromium podman buildah mmdebstrap runc uidmap slirp4netns fuse-overlayfs \
            krb5-kdc krb5-admin-server krb5-user libkrb5-dev postgresql
APT_BINS := docker-registry skopeo git chromium podman buildah mmdebstrap runc newuidmap slirp4netns fuse-overlayfs \
            krb5kdc kadmin.local kinit krb5-config initdb
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

system:
	@missing=""; for b in $(APT_BINS); do command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || ls /usr/lib/postgresql/*/bin/$$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PKGS); \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: system $(STAMP)

demo: setup
	$(VENV)/bin/indexflow demo

serve: setup
	$(VENV)/bin/indexflow serve

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

# The worker image (deployments/Containerfile) on a local Debian base; cached by content (sandbox/image.py)
image: setup
	$(PY) -m sandbox.image

bench: setup
	$(PY) bench/run_all.py

# plant each known mutant in a copy of the tree and run the test aimed at it (all must be caught)
mutation: setup
	$(PY) tests/mutants.py

clean:
	rm -rf $(VENV)
