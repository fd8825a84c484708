# Two entry points for a fresh machine: `make demo` and `make test` (both idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup system demo test bench clean

system:
	@command -v docker-registry >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 || \
	  { echo "installing docker-registry and skopeo (apt-get)"; \
	    $(if $(shell id -u | grep -qx 0 && echo y),,sudo) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(if $(shell id -u | grep -qx 0 && echo y),,sudo) apt-get install -y -qq docker-registry skopeo; }

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: system $(STAMP)

demo: setup
	$(VENV)/bin/indexflow demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV)
