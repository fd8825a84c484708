"""`indexflow serve`: the whole service on this machine in one command, stopped with Ctrl-C.

A Prefect server with its UI (its API URL set before it starts, so the UI works on any port), the
sandbox seeded with the demo data (or, with `--no-sandbox`, the operator's own setup file), the
blocks from a setup file this command writes and prints, the deployments of prefect.yaml, a
process worker and the IIB endpoint. Everything it starts is its child and stops with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from indexflow.app.merge_cmd import apply_prefect_defaults
from indexflow.errors import IndexflowError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = Path(".indexflow/serve")
SETTINGS_BLOCK = "indexflow"
STARTUP_TIMEOUT = 120.0


class ServeError(IndexflowError):
    """A part of the service did not come up (names the part and its log)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="the whole service locally: Prefect server + UI, sandbox, "
                                                "blocks, deployments, worker, IIB API (Ctrl-C stops it)")
    serve.add_argument("--port", type=int, default=4200, help="Prefect server/UI port (0: any free port)")
    serve.add_argument("--iib-port", type=int, default=8080, help="IIB API port (0: any free port)")
    serve.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                       help=f"Prefect home, sandbox, config and logs (default {DEFAULT_STATE_DIR})")
    serve.add_argument("--no-sandbox", action="store_true", help="real systems: set up from --config instead")
    serve.add_argument("--config", type=Path, help="setup YAML for --no-sandbox (see deployments/setup.example.yaml)")
    serve.set_defaults(func=_serve)


def port_or_free(port: int) -> int:
    """`port` when it is free on 127.0.0.1, else (or for 0) one the kernel picks."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Child:
    """A background process this command started, in its own process group (stopped with its children)."""

    name: str
    proc: subprocess.Popen
    log: Path


STOP_GRACE = 20.0  # seconds every part gets after SIGTERM, all at once, before SIGKILL
KILL_WAIT = 10.0  # seconds a SIGKILLed part may take to be reaped (the kernel's, not the part's, time)


def stop_all(children: list[Child], grace: float = STOP_GRACE) -> None:
    """SIGTERM every child's process group (each leads its own) and every process they started in a
    session of its own (a process worker's flow runs: Prefect gives each its own session, so neither
    the worker's group signal nor its death reaches them), all at once; SIGKILL what is left after
    `grace` seconds. Ctrl-C then costs the slowest part's shutdown, bounded by `grace + KILL_WAIT`,
    and leaves no flow run running on against a server that is gone. Safe to call twice."""
    live = [c for c in children if c.proc.poll() is None]
    below = [pid for c in live for pid in descendants(c.proc.pid)]
    groups = {c.proc.pid for c in live} | {g for pid in below if (g := _pgid(pid)) not in (None, os.getpgrp())}
    for child in live:
        print(f"stopping {child.name}", flush=True)
    for group in groups:
        signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in live:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    while time.monotonic() < deadline and any(_running(pid) for pid in below):
        time.sleep(0.2)  # the flow runs are not our children: polled (a zombie has ended)
    leftover = {c.proc.pid for c in live if c.proc.poll() is None}  # not reaped: its pid is not reused
    leftover |= {g for pid in below if _running(pid) and (g := _pgid(pid)) in groups}
    for group in leftover:
        signal_group(group, signal.SIGKILL)  # what outlived the grace
    for child in live:
        child.proc.wait(timeout=KILL_WAIT)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc: the parent of each), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], list(parents.get(pid, []))
    while todo:
        found.append(todo.pop(0))
        todo += parents.get(found[-1], [])
    return found


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
    except OSError:
        return None
    return fields[0], int(fields[1])


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for its reaper does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:  # ended meanwhile
        return None


def signal_group(pgid: int, sig: int) -> None:
    """Signal a process group; one that has ended already needs nothing."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # it ended between the check and the signal
        pass


def start_child(name: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
    """`args` in its own process group, logging to `logs/NAME.log`. Under util-linux's `setpriv
    --pdeathsig` (Debian essential) the part also gets SIGTERM if serve itself is SIGKILLed, which no
    handler of ours can catch: otherwise a server and a worker would run on, orphaned."""
    log = logs / f"{name}.log"
    setpriv = shutil.which("setpriv")
    if setpriv:
        args = [setpriv, "--pdeathsig", "TERM", "--", *args]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Child(name, proc, log)


def answers(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll `url` until it answers 200 (True), time runs out or `proc` exits (False)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def wait_http(child: Child, url: str, timeout: float = STARTUP_TIMEOUT) -> None:
    if not answers(url, timeout, child.proc):
        raise ServeError(f"{child.name} did not come up at {url}; see {child.log}")


def prefect_env(state_dir: Path, port: int) -> dict[str, str]:
    """The environment of every Prefect process here: a private home, the API URL fixed before the
    server starts (its UI reads it), leases kept on disk so a server restart does not orphan a lock."""
    base = f"http://127.0.0.1:{port}"
    return {"PREFECT_HOME": str(state_dir / "prefect"), "PREFECT_API_URL": f"{base}/api",
            "PREFECT_UI_URL": base, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
            "PREFECT_WORKER_QUERY_SECONDS": "2", "PWD": str(REPO)}


def sandbox_config(env, state_dir: Path) -> Path:  # noqa: ANN001 - SandboxEnv
    """The setup file for the sandbox: secrets as files beside it (0600), never inline."""
    token_file = state_dir / "gitlab-token"
    token_file.touch(mode=0o600)
    token_file.write_text(env.git_token)
    env._blocks = {"gitlab": f"{SETTINGS_BLOCK}-gitlab", "kubernetes": f"{SETTINGS_BLOCK}-konflux"}
    values = env.settings().model_dump(mode="json", exclude={"block_type_slug", "gitlab_credentials",
                                                             "kubernetes_credentials", "registry_auth_secret"})
    config = {
        "settings": {"name": SETTINGS_BLOCK, "values": values},
        "gitlab": {"name": f"{SETTINGS_BLOCK}-gitlab", "url": env.gitlab_url, "token": {"from_file": str(token_file)}},
        "kubernetes": {"name": f"{SETTINGS_BLOCK}-konflux", "kubeconfig": {"from_file": str(env.stack.kubeconfig_path)}},
        "results": {"name": "indexflow-results", "basepath": str(state_dir / "results")},
        "work_pools": {"process": {"type": "process"}},
    }
    path = state_dir / "setup.yaml"
    path.write_text("# written by `indexflow serve` for its sandbox (re-written on every start)\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


def indexflow_command() -> str:
    """How to call this CLI from another shell: the venv's script when there is one."""
    script = Path(sys.executable).parent / "indexflow"
    return str(script) if script.exists() else f"{sys.executable} -m indexflow.cli"


def try_line(api_url: str, seed) -> str:  # noqa: ANN001 - SeedResult
    """A merge command line that works as printed, from any shell (a fresh request id per run)."""
    return (f"PREFECT_API_URL={api_url} {indexflow_command()} merge --source-from-index {seed.source_index} "
            f"--target-index {seed.target_index} --deprecation-list {','.join(seed.deprecation_list)} "
            f"--ignore-bundle-ocp-version")


@contextmanager
def sandbox_up(state_dir: Path) -> Iterator[object]:
    from sandbox.demo_env import SandboxEnv

    with SandboxEnv.up(state_dir / "sandbox") as env:
        env.seed()
        yield env


def _serve(args: argparse.Namespace) -> int:
    if args.no_sandbox and not args.config:
        raise ServeError("--no-sandbox needs --config SETUP.yaml (the blocks for your registry, GitLab and Konflux)")
    state_dir = args.state_dir.resolve()
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port, iib_port = port_or_free(args.port), port_or_free(args.iib_port)
    os.environ.update(prefect_env(state_dir, port))  # before Prefect is imported in this process
    apply_prefect_defaults()
    env = dict(os.environ)
    bin_dir = Path(sys.executable).parent
    with ExitStack() as stack:
        server = start_child("server", [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1",
                                        "--port", str(port)], env, logs)
        children = [server]
        stack.callback(stop_all, children)
        sandbox = None if args.no_sandbox else stack.enter_context(sandbox_up(state_dir))
        config = args.config.resolve() if args.no_sandbox else sandbox_config(sandbox, state_dir)
        wait_http(server, f"{env['PREFECT_API_URL']}/health")
        from blocks.setup import run_setup

        for line in run_setup(config):
            print(f"setup: {line}", flush=True)
        deploy = subprocess.run([str(bin_dir / "prefect"), "--no-prompt", "deploy", "--all"], cwd=REPO, env=env,
                                capture_output=True, text=True)
        if deploy.returncode != 0:
            (logs / "deploy.log").write_text(deploy.stdout + deploy.stderr)
            raise ServeError(f"prefect deploy --all failed; see {logs / 'deploy.log'}")
        worker = start_child("worker", [str(bin_dir / "prefect"), "worker", "start", "--pool", "process",
                                        "--type", "process", "--name", "indexflow-serve"], env, logs)
        children.append(worker)
        iib = start_child("iib-api", [sys.executable, "-m", "indexflow.cli", "iib-api", "--port", str(iib_port)],
                          {**env, "INDEXFLOW_API_LOG_LEVEL": "warning"}, logs)
        children.append(iib)
        wait_http(iib, f"http://127.0.0.1:{iib_port}/docs")
        print_endpoints(env, iib_port, config, logs, sandbox)
        wait_for_stop(children)
        stop_all(children)  # now, before the sandbox they may still be talking to goes
    print("stopped", flush=True)
    return 0


def print_endpoints(env: dict[str, str], iib_port: int, config: Path, logs: Path, sandbox) -> None:  # noqa: ANN001
    iib_url = f"http://127.0.0.1:{iib_port}"
    print(f"ui: {env['PREFECT_UI_URL']}")
    print(f"api: {env['PREFECT_API_URL']}")
    print(f"iib-api: {iib_url}")
    print(f"config: {config}")
    print(f"logs: {logs}")
    if sandbox is not None:
        seed = sandbox.seeded
        print(f"registry: {sandbox.registry_url}")
        print(f"gitlab: {sandbox.gitlab_url}")
        print(f"try: {try_line(env['PREFECT_API_URL'], seed)}")
        print(f"try-iib: curl -s -X POST {iib_url}/api/v1/builds/merge-index-image -H 'Content-Type: application/json' "
              f"-d '{{\"source_from_index\": \"{seed.source_index}\", \"target_index\": \"{seed.target_index}\", "
              f"\"ignore_bundle_ocp_version\": true}}'")
    print("Ctrl-C stops everything", flush=True)


def wait_for_stop(children: list[Child]) -> None:
    """Until Ctrl-C / SIGTERM, or until a part dies (then say which).

    SIGINT gets its handler here, not from Python's default: Python leaves SIGINT ignored when it
    starts with it ignored, as a non-interactive shell starts its background jobs (`cmd &` in a
    script, CI), and serve would then never see the Ctrl-C (kill -INT) meant for it."""
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    while not stopping:
        dead = [c for c in children if c.proc.poll() is not None]
        if dead:
            raise ServeError(f"{dead[0].name} stopped (exit {dead[0].proc.returncode}); see {dead[0].log}")
        time.sleep(0.5)
