"""Catalog engine benchmark beside opm v1.73.0's recorded timings (perf/oracle-timings.md).

    .venv/bin/python bench/catalog.py            # first 2,000 corpus records
    .venv/bin/python bench/catalog.py --all      # all 7,019 records

Bundles come from ../shared/conformance/tools/synth_bundles.py. When the sandbox registry and the
registry client are available they are pushed to a local registry and `add` pulls them (as opm
did); otherwise `add` reads the bundle directories and the table says so.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexflow.catalog.add import add_bundle_refs  # noqa: E402
from indexflow.catalog.deprecate import deprecate_truncate  # noqa: E402
from indexflow.errors import CatalogError  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
# opm v1.73.0, semver mode, from perf/oracle-timings.md (seconds; migrate/validate of the 7,019 db
# were measured after opm's own migrate had crashed and the db was patched by hand).
OPM = {2000: {"add": 69.72, "migrate": 0.27, "deprecatetruncate 50": 1.27, "validate": 0.22},
       7019: {"add": 273.33, "migrate": 1.66, "deprecatetruncate 50": 7.85, "validate": 0.58}}


def synth(work: Path, limit: int | None) -> tuple[Path, list[dict]]:
    """Generate (once) the synthetic bundle dirs for the first `limit` records."""
    out = work / f"synth-{limit or 'all'}"
    if not (out / "index.json").exists():
        cmd = [sys.executable, str(SHARED / "conformance/tools/synth_bundles.py"),
               "--records", str(SHARED / "corpus/bundles/bundles.jsonl"), "--out", str(out)]
        subprocess.run(cmd + (["--limit", str(limit)] if limit else []), check=True, stdout=subprocess.DEVNULL)
    return out, json.loads((out / "index.json").read_text())


def registry_refs(stack: ExitStack, src: Path, index: list[dict]) -> tuple[list[str], dict[str, Path], str]:
    """Push every bundle to a local registry when the sandbox pieces exist; else use the dirs."""
    try:
        from indexflow.registry.client import RegistryClient
        from sandbox.images import push_bundle_image
        from sandbox.registry import LocalRegistry
    except ImportError:
        return [e["ref"] for e in index], {e["ref"]: src / e["dir"] for e in index}, "local dirs (no pulls)"
    reg = stack.enter_context(LocalRegistry())
    client = stack.enter_context(RegistryClient(insecure=(reg.host,)))
    refs = []
    for e in index:
        ref = e["ref"].replace("quay.io", reg.host, 1)
        push_bundle_image(client, ref, src / e["dir"], {})
        refs.append(ref)
    return refs, {}, f"pulled from {reg.host}"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def add_all(db: Path, refs: list[str], dirs: dict[str, Path], batch: int, concurrency: int) -> tuple[int, int]:
    """Batches of `batch` refs into one growing db (opm's procedure); returns (rejected batches, batches)."""
    rejected = 0
    for i in range(0, len(refs), batch):
        chunk = refs[i:i + batch]
        try:
            add_bundle_refs(db, chunk, {r: dirs[r] for r in chunk if r in dirs}, mode="semver",
                            concurrency=concurrency)
        except CatalogError as exc:
            rejected += 1
            print(f"  batch {i // batch}: rejected: {str(exc)[:160]}", file=sys.stderr)
    return rejected, -(-len(refs) // batch)


def dt_targets(db: Path, count: int = 50) -> list[str]:
    """opm's choice: per package (by name) its alphabetically first non-head bundle with entries."""
    con = sqlite3.connect(db)
    heads = {h for (h,) in con.execute("SELECT head_operatorbundle_name FROM channel")}
    targets = []
    for (pkg,) in con.execute("SELECT name FROM package ORDER BY name"):
        names = sorted({n for (n,) in con.execute(
            "SELECT DISTINCT ce.operatorbundle_name FROM channel_entry ce JOIN operatorbundle ob "
            "ON ob.name = ce.operatorbundle_name WHERE ce.package_name = ?", (pkg,))} - heads)
        if names:
            targets.append(con.execute("SELECT bundlepath FROM operatorbundle WHERE name = ?",
                                       (names[0],)).fetchone()[0])
        if len(targets) == count:
            break
    con.close()
    return targets


def fbc_steps(db: Path, work: Path) -> dict[str, float | str]:
    """migrate + validate through the FBC engineer's modules, when they exist."""
    try:
        from indexflow.catalog.migrate import migrate
        from indexflow.catalog.validate import validate_report
    except ImportError:
        return {"migrate": "n/a (indexflow.catalog.migrate missing)", "validate": "n/a"}
    out = work / "fbc"
    shutil.rmtree(out, ignore_errors=True)
    copy = work / "migrate.db"
    shutil.copyfile(db, copy)
    results: dict[str, float | str] = {}
    try:
        results["migrate"], _ = timed(migrate, copy, out)
    except CatalogError as exc:
        return {"migrate": f"error: {str(exc)[:80]}", "validate": "n/a"}
    results["validate"], report = timed(validate_report, out)
    if not report.passed:
        results["validate"] = f"{results['validate']:.2f} (failed: {report.message[:60]})"
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="all 7,019 records instead of the first 2,000")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "indexflow-bench-catalog")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"{SHARED} not found", file=sys.stderr)
        return 1
    limit = None if args.all else 2000
    args.work.mkdir(parents=True, exist_ok=True)
    src, index = synth(args.work, limit)
    db = args.work / "index.db"
    db.unlink(missing_ok=True)
    with ExitStack() as stack:
        refs, dirs, source = registry_refs(stack, src, index)
        add_s, (rejected, batches) = timed(add_all, db, refs, dirs, args.batch, args.concurrency)
    con = sqlite3.connect(db)
    loaded = con.execute("SELECT count(*) FROM operatorbundle").fetchone()[0]
    con.close()
    results: dict[str, float | str] = {"add": add_s}
    results.update(fbc_steps(db, args.work))
    dt_db = args.work / "dt.db"
    shutil.copyfile(db, dt_db)
    targets = dt_targets(dt_db)
    results["deprecatetruncate 50"], _ = timed(deprecate_truncate, dt_db, targets)
    opm = OPM[2000 if limit else 7019]
    print(f"\n{len(index)} bundles, semver mode, batches of {args.batch}; bundles {source}; "
          f"{loaded} loaded, {rejected}/{batches} batches rejected; deprecatetruncate targets: {len(targets)}")
    print(f"{'step':<22}{'indexflow (s)':>16}{'opm (s)':>10}{'opm/indexflow':>15}")
    for step in ("add", "migrate", "deprecatetruncate 50", "validate"):
        ours = results.get(step, "n/a")
        ratio = f"{opm[step] / ours:.1f}x" if isinstance(ours, float) and ours > 0 else "-"
        shown = f"{ours:.2f}" if isinstance(ours, float) else str(ours)
        print(f"{step:<22}{shown:>16}{opm[step]:>10.2f}{ratio:>15}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
