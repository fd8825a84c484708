"""`make bench`: every benchmark in bench/ in turn, each in its own process, with a closing table.

A bench is any `bench/*.py` with a `main` guard except this file; each runs with its default
arguments (the quick size where a bench has one) and its output streams through unchanged.
`--only NAME ...` picks some; `--list` shows them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benches() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py")
                  if p.name != Path(__file__).name and not p.name.startswith("_")
                  and "__main__" in p.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="bench names (file stems) to run")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    chosen = [p for p in benches() if args.only is None or p.stem in args.only]
    if args.list or not chosen:
        print("\n".join(p.stem for p in benches()))
        return 0 if args.list else 2
    rows = []
    for path in chosen:
        print(f"\n######## bench/{path.name}", flush=True)
        t = time.monotonic()
        code = subprocess.run([sys.executable, str(path)], cwd=HERE.parent).returncode
        rows.append((path.stem, code, time.monotonic() - t))
    print("\n######## benches")
    for name, code, secs in rows:
        print(f"  {name:<16} {'ok' if code == 0 else f'FAILED (exit {code})':<18} {secs:8.1f}s")
    return 0 if all(code == 0 for _, code, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
