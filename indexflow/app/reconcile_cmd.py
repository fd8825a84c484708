"""`indexflow reconcile [--settings NAME]`: repair merges that crashed or stopped (flows/reconcile.py).

Prints one line per request it repaired (rolled back, or rolled forward when only the MR merge was
left) and exits 0; nothing printed means nothing was left to repair.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("reconcile", help="roll back (or finish) merges that crashed or stopped, "
                                                   "from their publish journals")
    cmd.add_argument("--settings", default=None, help="only merges that used this MergeSettings block")
    cmd.set_defaults(func=_reconcile)


def _reconcile(args: argparse.Namespace) -> int:
    from indexflow.app.merge_cmd import apply_prefect_defaults

    apply_prefect_defaults()
    from flows.reconcile import reconcile

    for line in reconcile(settings_block=args.settings):
        print(line)
    return 0
