"""`indexflow ...` command line. Each verb group lives beside the code it drives.

Groups register themselves through a `register(subparsers)` function; user mistakes end in one
sentence on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from indexflow.errors import IndexflowError

# module path -> group name; each module exposes register(subparsers)
GROUPS = [
    "indexflow.catalog.cli",  # db, fbc
    "sandbox.cli",  # sandbox up/down, demo
    "indexflow.app.merge_cmd",  # merge
    "indexflow.app.setup_cmd",  # setup, iib-api
    "indexflow.app.reconcile_cmd",  # reconcile
    "indexflow.app.serve_cmd",  # serve
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="group", required=True)
    for name in GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a group not built yet must not break the others
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except IndexflowError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
