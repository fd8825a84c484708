"""FBC engine benchmark (migrate, validate) beside opm v1.73.0's recorded timings.

    .venv/bin/python bench/fbc.py                 # perf/community-2000.db (+ a 7,019-record db if found)
    .venv/bin/python bench/fbc.py --db7000 X.db   # use that db as the 7,019-record one
    .venv/bin/python bench/fbc.py --build7000     # build it first with bench/catalog.py's add (~30 s)

Every step runs in its own Python process, so the time includes interpreter start-up (as opm's
recorded wall clock includes its own) and the peak RSS is that step's alone. The child reads our
modules' bytecode from a cache under the temp dir (compiled once, before any timing), as an
installed indexflow does: with PYTHONDONTWRITEBYTECODE set, as in this workspace, every run would
otherwise compile them from source (~12 ms of a 0.3 s validate, a cost no user pays).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# opm v1.73.0 wall clock in seconds, perf/oracle-timings.md. The 7,019 figures are for opm's own
# db (5,425 bundles loaded, hand-patched so migrate would not crash); validate failed early there.
OPM = {"community-2000": {"migrate": 0.27, "validate": 0.22},
       "7019 records": {"migrate": 1.66, "validate": 0.58}}
MEMORY_BUDGET_MB = 300

_STEP = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
start = time.perf_counter()
note = ""
if {step!r} == "migrate":
    from indexflow.catalog.migrate import migrate
    migrate({db!r}, {out!r}, level={level!r})
else:
    from indexflow.catalog.validate import validate_report
    report = validate_report({out!r})
    note = "passed" if report.passed else "failed: " + report.message.splitlines()[0][:70]
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"inside": time.perf_counter() - start, "note": note, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_mb": usage.ru_maxrss / 1024}}))
"""


@functools.cache
def _child_env() -> dict[str, str]:
    """The environment of a timed child: bytecode cached outside the checkout, compiled now."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "indexflow-bench-pycache")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "indexflow")], env=env, check=True)
    return env


def run_step(step: str, db: Path, out: Path, level: str | None) -> dict:
    code = _STEP.format(root=str(ROOT), step=step, db=str(db), out=str(out), level=level)
    env = _child_env()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        return {"wall": None, "note": "error: " + proc.stderr.strip().splitlines()[-1][:80], "rss_mb": 0}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall": wall}


def bench_db(label: str, db: Path, work: Path, level: str | None) -> list[tuple]:
    rows = []
    copy = work / "index.db"
    shutil.copyfile(db, copy)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    for step in ("migrate", "validate"):
        res = run_step(step, copy, out, level)
        rows.append((f"{label} {step}" + (" (csvmeta)" if level else ""), res, OPM.get(label, {}).get(step)))
    return rows


def find_7000(args: argparse.Namespace, work: Path) -> Path | None:
    """--db7000, else build one if asked (bench/catalog.py's synthesis and batched add)."""
    if args.db7000:
        return args.db7000
    if args.build7000:
        sys.path.insert(0, str(ROOT / "bench"))
        import catalog  # bench/catalog.py: synthesise + add in batches, like opm's run

        src, index = catalog.synth(work, None)
        db = work / "all.db"
        db.unlink(missing_ok=True)
        dirs = {e["ref"]: src / e["dir"] for e in index}
        catalog.add_batches(db, list(dirs), lambda chunk: catalog.fetch_bundles(chunk, dirs.get, 8), 200, [])
        return db
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db7000", type=Path, help="a db built from all 7,019 synthetic records")
    parser.add_argument("--build7000", action="store_true", help="build that db with bench/catalog.py first")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "indexflow-bench-fbc")
    args = parser.parse_args()
    community = SHARED / "conformance" / "perf" / "community-2000.db"
    if not community.is_file():
        print(f"{community} not found", file=sys.stderr)
        return 1
    args.work.mkdir(parents=True, exist_ok=True)
    rows = bench_db("community-2000", community, args.work, None)
    rows += bench_db("community-2000", community, args.work, "bundle-object-to-csv-metadata")
    big = find_7000(args, args.work)
    if big:
        rows += bench_db("7019 records", big, args.work, None)
    print(f"{'step':<42}{'indexflow (s)':>14}{'cpu (s)':>9}{'opm (s)':>9}{'opm/ours':>10}{'peak RSS':>10}  note")
    for name, res, opm in rows:
        ours = res["wall"]
        shown = f"{ours:.2f}" if ours is not None else "-"
        cpu = f"{res['cpu']:.2f}" if ours is not None else "-"  # (less sensitive to a loaded machine)
        ratio = f"{opm / ours:.1f}x" if ours and opm else "-"
        print(f"{name:<42}{shown:>14}{cpu:>9}{(f'{opm:.2f}' if opm else '-'):>9}{ratio:>10}"
              f"{res['rss_mb']:>7.0f} MB  {res['note']}")
    worst = max(r[1]["rss_mb"] for r in rows)
    print(f"(wall clock of the whole process, start-up included, like opm's figures; memory budget {MEMORY_BUDGET_MB} MB, worst {worst:.0f} MB)")
    if not big:
        print("no 7,019-record db: pass --db7000 PATH or --build7000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
