"""`indexflow sandbox up|down|status` and `indexflow demo`.

`up` starts the stack in a detached background process (`python -m sandbox.stack serve`) so it
outlives the command, waits until it has written `stack.json`, and prints the endpoints, tokens
and kubeconfig path. `down` stops that process by the pid recorded there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from indexflow.errors import IndexflowError

DEFAULT_STATE_DIR = Path(".indexflow/sandbox")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def register(subparsers: argparse._SubParsersAction) -> None:
    sandbox = subparsers.add_parser("sandbox", help="the local stack: registry, git + GitLab, Konflux")
    actions = sandbox.add_subparsers(dest="action", required=True)
    for name, func, text in (("up", _up, "start the stack in the background and print its endpoints"),
                             ("down", _down, "stop the stack"),
                             ("status", _status, "print the running stack's endpoints"),
                             ("seed", _seed, "seed the running stack with the demo data (real catalogs)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                            help=f"where the stack keeps its data (default {DEFAULT_STATE_DIR})")
        action.set_defaults(func=func)
    demo = subparsers.add_parser("demo", help="sandbox up, seed, merge, check the output image")
    demo.add_argument("--state-dir", type=Path, default=None)
    demo.add_argument("--keep", action="store_true",
                      help="leave the sandbox and the demo's Prefect home in place; print the run's UI URL and a "
                           "command line that merges again")
    demo.set_defaults(func=_demo)


def _alive(pid: int) -> bool:
    """Is `pid` running? (Reaps it first when it is our own exited child, e.g. in tests.)"""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_state(state_dir: Path) -> dict | None:
    """The stack.json of a live stack in `state_dir`, or None."""
    path = state_dir / "stack.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if _alive(int(state.get("pid", 0))) else None


def print_state(state: dict) -> None:
    print(f"state dir:   {state['state_dir']}")
    print(f"registry:    {state['registry']['url']}  (plain HTTP: list {state['registry']['host']} in the "
          "settings' insecure_registries)")
    print(f"gitlab:      {state['gitlab']['url']}  token {state['gitlab']['token']}")
    for project, url in state["gitlab"]["repos"].items():
        print(f"  repo {project}: {url}")
    print(f"konflux:     {state['konflux']['api']}  namespace {state['konflux']['namespace']}")
    print(f"kubeconfig:  {state['konflux']['kubeconfig']}")
    print(f"knobs:       POST {state['konflux']['knobs']} (bearer token from the kubeconfig)")


def start_background(state_dir: Path) -> dict:
    """Start `serve` detached; return its stack.json once written (or raise with its log tail)."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "stack.json").unlink(missing_ok=True)
    log_path = state_dir / "stack.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sandbox.stack", "serve", str(state_dir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = running_state(state_dir)
        if state and state.get("pid") == proc.pid:
            return state
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    else:
        proc.terminate()
    lines = log_path.read_text(errors="replace").strip().splitlines()
    said = [ln.removeprefix("Error: ") for ln in lines if ln.startswith("Error: ")]
    reason = said[-1] if said else " ".join(lines[-3:]) or "no output"
    raise IndexflowError(f"the sandbox did not start in {state_dir}: {reason}")


def stop_background(state_dir: Path) -> bool:
    """SIGTERM the recorded stack process and wait for it (SIGKILL to its group after a grace period)."""
    state = running_state(state_dir)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):  # the stack leads its own process group: take its docker-registry down with it
        os.killpg(pid, signal.SIGKILL)
    (state_dir / "stack.json").unlink(missing_ok=True)
    return True


def _up(args: argparse.Namespace) -> int:
    state = running_state(args.state_dir)
    if state:
        print("sandbox already running")
    else:
        state = start_background(args.state_dir)
        print("sandbox up")
    print_state(state)
    return 0


def _down(args: argparse.Namespace) -> int:
    print("sandbox stopped" if stop_background(args.state_dir) else f"no sandbox running in {args.state_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = running_state(args.state_dir)
    if state is None:
        print(f"no sandbox running in {args.state_dir}")
        return 1
    print_state(state)
    return 0


def _seed(args: argparse.Namespace) -> int:
    from sandbox.demo_env import SandboxEnv

    state = running_state(args.state_dir)
    if state is None:
        raise IndexflowError(f"no sandbox running in {args.state_dir}: start it with `indexflow sandbox up`")
    with SandboxEnv.attach(state) as env:
        seed = env.seed()
    print_seed(seed)
    return 0


def print_seed(seed) -> None:  # noqa: ANN001 - SeedResult
    print(f"seeded:      {seed.bundles} bundles of {seed.packages} packages")
    print(f"source:      {seed.source_index} ({seed.source_bundles} bundles)")
    print(f"target:      {seed.target_index} ({seed.target_bundles} bundles, "
          f"{len(seed.missing_from_source)} missing from the source)")
    print(f"deprecate:   {', '.join(seed.deprecation_list)}")


def _demo(args: argparse.Namespace) -> int:
    from sandbox.demo import private_prefect_home

    state_dir = (args.state_dir or Path(tempfile.mkdtemp(prefix="indexflow-demo-"))).resolve() if args.keep \
        else args.state_dir
    home = private_prefect_home(state_dir / "prefect" if args.keep else None)  # before Prefect is imported
    from sandbox.demo import run_demo

    return run_demo(state_dir=state_dir, keep=args.keep, out=sys.stdout, prefect_home=home)
