"""Build the worker image (deployments/Containerfile) on a machine that reaches no public image registry.

`make image` (`python -m sandbox.image`) builds it with podman against a local base made from Debian
packages: `mmdebstrap` of a minimal bookworm with python3, venv, git and CA certificates, imported
with `podman import`. Both images are tagged by a content hash of their inputs, so a second build
with nothing changed returns at once (tests call the same function).

Podman runs with its own storage, run dir and containers.conf (`Podman.private()`), never the
machine's: `runc` (crun 1.8 refuses this kernel's hybrid cgroup layout) and `default_ulimits = []`
(the default ulimits cannot be set here). The build mounts the host's CA bundle and pip config
read-only, so pip reaches the package index as the host does; mounts are never committed to a layer.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
CONTAINERFILE = "deployments/Containerfile"
# what the Containerfile COPYs (plus itself and its ignore file): the image's content hash covers them
IMAGE_INPUTS = ("deployments/Containerfile", ".containerignore", "pyproject.toml", "README.md", "indexflow",
                "flows", "tasks", "blocks", "deployments", "prefect.yaml")
IGNORED_PARTS = {"__pycache__", ".git"}
IGNORED_SUFFIXES = (".pyc", ".egg-info")
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates")
# documentation and translations are dead weight in a runtime image
BASE_DPKG_OPTS = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
                  "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
                  "path-exclude=/usr/share/info/*")
BASE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORKER_REPO = "localhost/indexflow/worker"
BASE_REPO = "localhost/indexflow/base"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CONF = Path("/etc/pip.conf")
CONTAINERS_CONF = """\
# written by sandbox/image.py for indexflow's private podman store
[containers]
default_ulimits = []
[engine]
runtime = "runc"
events_logger = "file"
tmp_dir = "{tmp}"
"""


class PodmanError(RuntimeError):
    """podman (or mmdebstrap) failed; the message ends with the tail of its output."""


@dataclass(frozen=True)
class Podman:
    """The podman command line bound to one storage root, run root and containers.conf."""

    root: Path
    runroot: Path
    conf: Path

    @classmethod
    def private(cls, home: Path | None = None) -> "Podman":
        """indexflow's own store: $INDEXFLOW_PODMAN_HOME, default ~/.cache/indexflow/podman.

        Images persist there between test sessions (the build cache); the run root lives in /tmp.
        """
        home = home or Path(os.environ.get("INDEXFLOW_PODMAN_HOME")
                            or Path.home() / ".cache" / "indexflow" / "podman")
        runroot = Path(tempfile.gettempdir()) / f"indexflow-podman-{os.getuid()}-{_short(str(home))}"
        home.mkdir(parents=True, exist_ok=True)
        runroot.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = home / "containers.conf"
        text = CONTAINERS_CONF.format(tmp=runroot / "libpod")
        if not conf.exists() or conf.read_text() != text:
            conf.write_text(text)
        return cls(home / "storage", runroot, conf)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.root), "--runroot", str(self.runroot), "--runtime", "runc", *args]

    def run(self, *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(*args), env=env or self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise PodmanError(f"podman {args[0]} exited {result.returncode}: {_tail(result)}")
        return result

    def popen(self, *args: str, **kw: object) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, **kw)

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def image_size(self, image: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def image_id(self, image: str) -> str:
        return self.run("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _tail(result: subprocess.CompletedProcess, size: int = 3000) -> str:
    return ((result.stdout or "") + (result.stderr or ""))[-size:]


def can_run_containers(podman: Podman) -> str | None:
    """None when podman can run a container here, else the reason it cannot (for a test skip)."""
    for tool in ("podman", "runc"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make system installs it)"
    try:
        podman.run("info", timeout=60)
    except (PodmanError, subprocess.TimeoutExpired) as exc:
        return f"podman cannot start here: {exc}"
    return None


@contextmanager
def _build_lock(podman: Podman) -> Iterator[None]:
    """One build at a time per store (two test processes may ask at once)."""
    with open(podman.root.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_tag() -> str:
    recipe = json.dumps([BASE_SUITE, BASE_PACKAGES, BASE_DPKG_OPTS, BASE_PATH])
    return f"{BASE_REPO}:{BASE_SUITE}-{_short(recipe)}"


def build_base(podman: Podman) -> str:
    """The Debian base (mmdebstrap minbase + python3, venv, git, CA certificates), once per recipe."""
    tag = base_tag()
    if podman.exists(tag):
        return tag
    if not shutil.which("mmdebstrap"):
        raise PodmanError("mmdebstrap is not installed (make system installs it)")
    with tempfile.TemporaryDirectory(prefix="indexflow-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        argv = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                *(f"--dpkgopt={opt}" for opt in BASE_DPKG_OPTS), BASE_SUITE, str(rootfs)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise PodmanError(f"mmdebstrap exited {result.returncode}: {_tail(result)}")
        podman.run("import", "--change", f"ENV {BASE_PATH}", "--change", 'CMD ["/bin/bash"]',
                   str(rootfs), tag, timeout=300)
    return tag


def input_files(repo: Path = REPO) -> list[Path]:
    """Every file the image's content depends on, in a stable order."""
    found: set[Path] = set()
    for name in IMAGE_INPUTS:
        path = repo / name
        candidates = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        for file in candidates:
            rel = file.relative_to(repo)
            if IGNORED_PARTS.isdisjoint(rel.parts) and not any(
                    part.endswith(IGNORED_SUFFIXES) for part in rel.parts):
                found.add(rel)
    return sorted(found)


def content_tag(base_id: str, repo: Path = REPO) -> str:
    """The worker image's tag: a hash of the base image id and every input file's path and bytes."""
    digest = hashlib.sha256(base_id.encode())
    for rel in input_files(repo):
        digest.update(str(rel).encode() + b"\0" + (repo / rel).read_bytes() + b"\0")
    return f"{WORKER_REPO}:{digest.hexdigest()[:16]}"


def host_build_mounts() -> list[str]:
    """The host's CA bundle and pip config, read-only, so RUN steps reach the package index."""
    mounts: list[str] = []
    if CA_BUNDLE.is_file():
        mounts += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    if PIP_CONF.is_file():
        mounts += ["--volume", f"{PIP_CONF}:{PIP_CONF}:ro"]
    return mounts


def build_image(podman: Podman, repo: Path = REPO, base: str | None = None) -> str:
    """Build deployments/Containerfile on `base` (default: the local Debian base); cached by content."""
    with _build_lock(podman):
        base = base or build_base(podman)
        tag = content_tag(podman.image_id(base), repo)
        if podman.exists(tag):
            return tag
        podman.run("build", "--network", "host", "--layers", "--pull-never", *host_build_mounts(),
                   "--build-arg", f"BASE_IMAGE={base}", "-f", str(repo / CONTAINERFILE), "-t", tag,
                   str(repo), timeout=1200)
        podman.run("tag", tag, f"{WORKER_REPO}:latest")
    return tag


def main() -> int:
    podman = Podman.private()
    started = time.monotonic()
    try:
        tag = build_image(podman)
    except (PodmanError, subprocess.TimeoutExpired) as exc:
        print(f"image build failed: {exc}", file=sys.stderr)
        return 1
    size = podman.image_size(tag)
    print(f"{tag}  {size / 2**20:.0f} MiB  ({time.monotonic() - started:.0f} s; store {podman.root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
