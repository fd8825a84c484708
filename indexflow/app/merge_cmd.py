"""`indexflow merge ...`: the merge flow from the command line (`indexflow demo` lives in sandbox/cli.py).

Prefect is imported inside the handlers only, so `indexflow db ...` stays fast and the core
package keeps its no-Prefect rule. Without PREFECT_API_URL the flow runs on an ephemeral API.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from indexflow.catalog.modes import load_mode_map
from indexflow.errors import ValidationError

TOKEN_ENV = "INDEXFLOW_OVERWRITE_TARGET_INDEX_TOKEN"
# No phoning home; and an ephemeral API on a busy 2-core box can take longer than Prefect's 20 s (at
# load 40, `make demo`'s took over 180 s: a fresh database is migrated on start).
# Lock leases on disk (under PREFECT_HOME), so the lock of a merge killed with its ephemeral API can
# still be released by `indexflow reconcile` (in memory, its slot would stay taken for good).
PREFECT_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
                    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem"}


def apply_prefect_defaults() -> None:
    """Set the defaults above unless the user chose otherwise (call before Prefect is imported)."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def register(subparsers: argparse._SubParsersAction) -> None:
    merge = subparsers.add_parser("merge", help="merge a source index into a target index (IIB merge-index-image)")
    merge.add_argument("--source-from-index", required=True)
    merge.add_argument("--target-index")
    merge.add_argument("--deprecation-list", action="append", default=[], metavar="PULLSPEC",
                       help="bundle to deprecate (repeat, or comma-separate)")
    merge.add_argument("--binary-image")
    merge.add_argument("--overwrite-target-index", action="store_true")
    merge.add_argument("--overwrite-target-index-token-file", type=Path, metavar="FILE",
                       help=f"file holding user:password (or set {TOKEN_ENV}); never on the command line")
    merge.add_argument("--distribution-scope")
    merge.add_argument("--build-tag", action="append", default=[], dest="build_tags")
    merge.add_argument("--graph-update-mode")
    merge.add_argument("--graph-update-modes", type=Path, metavar="FILE",
                       help="JSON/YAML {package: mode} map (or ci_meta.json-shaped): per-package graph modes")
    merge.add_argument("--default-head-policy", choices=["fail", "remove-package"],
                       help="an OCP-incompatible default-channel head: fail (IIB) or remove the package")
    merge.add_argument("--ignore-bundle-ocp-version", action="store_true")
    merge.add_argument("--dry-run", action="store_true")
    merge.add_argument("--request-id")
    merge.add_argument("--settings", default="indexflow", help="name of the MergeSettings block")
    merge.add_argument("--max-removed-share", type=float, metavar="SHARE",
                       help="destructive-merge guard for this run: share (0-1) of the target's bundles the "
                            "merge may drop or mark invalid (default: the settings' max_removed_share)")
    merge.add_argument("--json", action="store_true",
                       help="print the result as JSON (outputs with digests, MR, counts, guard numbers, timings)")
    merge.set_defaults(func=_merge)


def _token(args: argparse.Namespace) -> str | None:
    if args.overwrite_target_index_token_file:
        try:
            return args.overwrite_target_index_token_file.read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError):
            raise ValidationError(f"cannot read the token file {args.overwrite_target_index_token_file}") from None
    return os.environ.get(TOKEN_ENV) or None


def flow_parameters(args: argparse.Namespace) -> dict:
    """CLI options -> the flow's A1 parameters (same names)."""
    deprecations = [p for item in args.deprecation_list for p in item.split(",") if p]
    return {
        "source_from_index": args.source_from_index, "target_index": args.target_index,
        "deprecation_list": deprecations, "binary_image": args.binary_image,
        "overwrite_target_index": args.overwrite_target_index, "overwrite_target_index_token": _token(args),
        "distribution_scope": args.distribution_scope, "build_tags": args.build_tags,
        "graph_update_mode": args.graph_update_mode, "ignore_bundle_ocp_version": args.ignore_bundle_ocp_version,
        "dry_run": args.dry_run, "request_id": args.request_id, "settings_block": args.settings,
        "graph_update_modes": load_mode_map(args.graph_update_modes) if args.graph_update_modes else None,
        "default_head_policy": args.default_head_policy,
        "max_removed_share": args.max_removed_share,
    }


def _merge(args: argparse.Namespace) -> int:
    apply_prefect_defaults()
    from flows.merge_index import run_merge

    result = run_merge(**flow_parameters(args))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for line in result.get("lines", []):
            print(line)
    return 0
