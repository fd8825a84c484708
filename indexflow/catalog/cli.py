"""`indexflow db ...` and `indexflow fbc ...`: opm-shaped verbs over the catalog engine.

The verbs mirror opm's (`registry add`, `registry deprecatetruncate`, `migrate`, `validate`) so
release engineers feel at home; the work is done by the pure-Python engine in this package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `db` and `fbc` groups to the top-level parser."""
    db = sub.add_parser("db", help="work on a sqlite index.db (opm registry verbs)")
    dbs = db.add_subparsers(dest="verb", required=True)

    p = dbs.add_parser("list", help="list bundles as `opm render` of the db shows them")
    p.add_argument("db", type=Path)
    p.set_defaults(func=_db_list)

    p = dbs.add_parser("add", help="add bundles (opm registry add)")
    p.add_argument("db", type=Path)
    p.add_argument("--mode", default="replaces", choices=["replaces", "semver", "semver-skippatch"],
                   help="graph mode of every package not in --mode-map")
    p.add_argument("--mode-map", type=Path, metavar="FILE",
                   help="JSON/YAML {package: mode} (opm names or ci.yaml's updateGraph values, or a "
                        "ci_meta.json-shaped file): each package's bundles are added in its own mode")
    p.add_argument("--bundle", "-b", action="append", required=True, metavar="REF[=DIR]",
                   help="bundle image; REF=DIR takes the content from a local bundle directory")
    p.add_argument("--concurrency", type=int, default=16, help="parallel bundle pulls")
    p.add_argument("--use-http", action="store_true", help="registries of the refs may speak plain HTTP")
    p.add_argument("--skip-tls-verify", action="store_true", help="do not verify the registries' certificates")
    p.add_argument("--ca-file", type=Path, help="CA bundle for the registries of the refs")
    p.add_argument("--auth-file", type=Path, help="docker config.json with credentials (default ~/.docker/config.json)")
    p.add_argument("--enable-alpha", action="store_true", help="allow olm.substitutesFor bundles (opm alpha)")
    p.set_defaults(func=_db_add)

    p = dbs.add_parser("deprecatetruncate", help="deprecate bundles and truncate their graph")
    p.add_argument("db", type=Path)
    p.add_argument("--bundle", "-b", action="append", required=True, metavar="REF")
    p.add_argument("--allow-package-removal", action="store_true")
    p.set_defaults(func=_db_deprecate)

    p = dbs.add_parser("migrate", help="migrate the db to a File-Based Catalog directory")
    p.add_argument("db", type=Path)
    p.add_argument("outdir", type=Path)
    p.add_argument("--migrate-level", default=None, choices=["none", "bundle-object-to-csv-metadata"])
    p.add_argument("-o", "--output", default="json", choices=["json", "yaml"])
    p.set_defaults(func=_db_migrate)

    fbc = sub.add_parser("fbc", help="work on File-Based Catalog directories")
    fbcs = fbc.add_subparsers(dest="verb", required=True)
    p = fbcs.add_parser("validate", help="validate an FBC directory (opm validate)")
    p.add_argument("dir", type=Path)
    p.add_argument("-o", "--output", default=None, choices=["json"])
    p.set_defaults(func=_fbc_validate)
    p = fbcs.add_parser("merge", help="copy FROM_DIR's packages over INTO_DIR, normalise to JSON")
    p.add_argument("from_dir", type=Path)
    p.add_argument("into_dir", type=Path)
    p.set_defaults(func=_fbc_merge)


def _split_bundle_args(values: list[str]) -> tuple[list[str], dict[str, Path]]:
    """`-b a,b -b c=DIR` -> ordered refs and the refs that come from local directories."""
    refs: list[str] = []
    dirs: dict[str, Path] = {}
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            ref, _, directory = item.partition("=")
            refs.append(ref)
            if directory:
                dirs[ref] = Path(directory)
    return refs, dirs


def _db_list(args: argparse.Namespace) -> int:
    from indexflow.catalog.db import list_bundles

    for rec in list_bundles(args.db):
        print(json.dumps({"packageName": rec.packageName, "csvName": rec.csvName,
                          "version": rec.version, "bundlePath": rec.bundlePath}))
    return 0


def _db_add(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from indexflow.catalog.add import add_bundle_refs, registry_client_for
    from indexflow.catalog.modes import load_mode_map

    modes = load_mode_map(args.mode_map) if args.mode_map else None
    refs, dirs = _split_bundle_args(args.bundle)
    pulled = [r for r in refs if r not in dirs]
    with ExitStack() as stack:
        client = stack.enter_context(registry_client_for(
            pulled, args.auth_file, args.use_http or args.skip_tls_verify, args.ca_file)) if pulled else None
        add_bundle_refs(args.db, refs, local_dirs=dirs, mode=args.mode, concurrency=args.concurrency,
                        enable_alpha=args.enable_alpha, client=client, modes=modes)
    return 0


def _db_deprecate(args: argparse.Namespace) -> int:
    from indexflow.catalog.deprecate import deprecate_truncate

    refs, _ = _split_bundle_args(args.bundle)
    deprecate_truncate(args.db, refs, allow_package_removal=args.allow_package_removal)
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    from indexflow.catalog.migrate import migrate

    level = None if args.migrate_level in (None, "none") else args.migrate_level
    migrate(args.db, args.outdir, level=level, fmt=args.output)
    return 0


def _fbc_validate(args: argparse.Namespace) -> int:
    from indexflow.catalog.validate import validate_report

    report = validate_report(args.dir)
    if args.output == "json":  # Go's MarshalIndent: 2 spaces, HTML-escaped (`->` is `-\u003e`)
        text = json.dumps(report.as_json(), indent=2, ensure_ascii=False)
        print(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    if not report.passed:
        print(f"Error: {report.message}", file=sys.stderr)
        return 1
    return 0


def _fbc_merge(args: argparse.Namespace) -> int:
    from indexflow.catalog.merge import enforce_json, merge_catalog_dirs

    merge_catalog_dirs(args.from_dir, args.into_dir)
    enforce_json(args.into_dir)
    return 0
