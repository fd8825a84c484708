"""`indexflow ...` command line. Each verb group lives beside the code it drives.

Groups register themselves through a `register(subparsers)` function; user mistakes end in one
sentence on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from indexflow.errors import IndexflowError

# Prefect raises a bare RuntimeError with this text when its ephemeral API (the one a command starts when
# PREFECT_API_URL is not set) does not answer in time; a busy machine, not a bug of ours or the user's
EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"

# module path -> group name; each module exposes register(subparsers)
GROUPS = [
    "indexflow.catalog.cli",  # db, fbc
    "sandbox.cli",  # sandbox up/down, demo
    "indexflow.app.merge_cmd",  # merge
    "indexflow.app.setup_cmd",  # setup, iib-api
    "indexflow.app.reconcile_cmd",  # reconcile
    "indexflow.app.serve_cmd",  # serve
]
# groups whose module is all a command of theirs needs: `indexflow fbc validate` builds only the
# catalog verbs' parser, without importing the other groups (yaml, subprocess, socket, dataclasses:
# ~35 ms, an eighth of validating a 7,000-bundle catalog)
SELF_CONTAINED = {"db": "indexflow.catalog.cli", "fbc": "indexflow.catalog.cli"}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Every group's parser; only one module's when `argv` starts with a SELF_CONTAINED group."""
    parser = argparse.ArgumentParser(prog="indexflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="group", required=True)
    first = argv[0] if argv else None
    for name in [SELF_CONTAINED[first]] if first in SELF_CONTAINED else GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a group not built yet must not break the others
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except IndexflowError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        if not str(exc).startswith(EPHEMERAL_TIMEOUT):
            raise
        print(f"Error: {ephemeral_timeout()}", file=sys.stderr)
        return 1
    return int(rc or 0)


def ephemeral_timeout() -> str:
    """What to do when the local Prefect API did not start (Prefect's own text names no way out)."""
    seconds = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
    return (f"the local Prefect API (started because PREFECT_API_URL is not set) did not answer within "
            f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS={seconds} s; on a busy machine raise that "
            "setting, or set PREFECT_API_URL to a running Prefect server")


if __name__ == "__main__":
    sys.exit(main())
