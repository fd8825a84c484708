"""Replay every recorded opm add / deprecatetruncate / list case through `indexflow db ...`.

Failing adds must leave the db exactly as before the call (indexflow's deliberate difference from
opm), so they are compared with the start db's dump instead of opm's expected-db.json.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest

from indexflow.catalog.db import create_db
from indexflow.cli import main
from tests.conftest import SHARED as SHARED_ROOT
from tests.conftest import WITHOUT_SHARED, shared_opted_out

SHARED = SHARED_ROOT / "conformance"
# skipped only on an explicit opt-out (tests/conftest.py stops the session otherwise)
pytestmark = [pytest.mark.conformance,
              pytest.mark.skipif(shared_opted_out(), reason=f"{WITHOUT_SHARED}=1 and ../shared is missing")]


def _cases(*ops: str) -> list[str]:
    if not SHARED.is_dir():
        return []
    return sorted(p.parent.name for p in (SHARED / "cases").glob("*/case.json")
                  if json.loads(p.read_text())["op"] in ops)


def _normalizer():
    spec = importlib.util.spec_from_file_location("normalize_db", SHARED / "tools" / "normalize_db.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dump(db: Path) -> dict:
    """Normalised dump; `api` compared by group/version/kind (plural choice is Go-map order in opm)."""
    data = _normalizer().dump(str(db))
    data["api"] = sorted({(a["group"], a["version"], a["kind"]) for a in data["api"]})
    return data


def _expected(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["api"] = sorted({(a["group"], a["version"], a["kind"]) for a in data["api"]})
    return data


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def _bundle_args(refs: list[str]) -> list[str]:
    index = {e["ref"]: SHARED / e["dir"] for e in json.loads((SHARED / "bundles" / "index.json").read_text())}
    return [a for ref in refs for a in ("-b", f"{ref}={index[ref]}")]


def _prepare(case_id: str, tmp_path: Path) -> tuple[Path, dict, Path, dict]:
    """Case dir, case, a scratch db (copy of start_db, or absent) and the dump it starts from."""
    case_dir = SHARED / "cases" / case_id
    case = json.loads((case_dir / "case.json").read_text())
    db = tmp_path / "index.db"
    if case.get("start_db"):
        shutil.copyfile(case_dir / case["start_db"], db)
        return case_dir, case, db, _dump(db)
    empty = tmp_path / "empty.db"
    create_db(empty)  # what a failed add into a new db must leave behind
    return case_dir, case, db, _dump(empty)


def _check(case: dict, case_dir: Path, db: Path, before: dict, rc: int, stderr: str) -> None:
    expect = case["expect"]
    assert rc == expect["exit_code"], stderr
    if rc:
        assert stderr.strip() == f"Error: {expect['error']}"
        if case["op"] == "add":  # indexflow: a failed add changes nothing
            assert _dump(db) == before
            return
    assert _dump(db) == _expected(case_dir / expect["db"])


@pytest.mark.parametrize("case_id", _cases("add"))
def test_add(case_id: str, tmp_path: Path) -> None:
    case_dir, case, db, before = _prepare(case_id, tmp_path)
    mode = ["--mode", case["mode"]] if case.get("mode") not in (None, "replaces") else []
    rc, err = _run(["db", "add", str(db), *mode, *_bundle_args(case["bundles"])])
    _check(case, case_dir, db, before, rc, err)


@pytest.mark.parametrize("case_id", _cases("deprecatetruncate"))
def test_deprecatetruncate(case_id: str, tmp_path: Path) -> None:
    case_dir, case, db, before = _prepare(case_id, tmp_path)
    extra = ["--allow-package-removal"] if case.get("allow_package_removal") else []
    args = [a for ref in case["bundles"] for a in ("-b", ref)]
    rc, err = _run(["db", "deprecatetruncate", str(db), *extra, *args])
    _check(case, case_dir, db, before, rc, err)


@pytest.mark.parametrize("case_id", _cases("list"))
def test_list(case_id: str, tmp_path: Path) -> None:
    case_dir, case, db, _ = _prepare(case_id, tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["db", "list", str(db)]) == 0
    got = sorted((json.loads(line) for line in out.getvalue().splitlines()), key=lambda d: json.dumps(d, sort_keys=True))
    want = sorted(json.loads((case_dir / case["expect"]["bundles"]).read_text()),
                  key=lambda d: json.dumps(d, sort_keys=True))
    assert got == want


def test_every_public_case_is_replayed() -> None:
    """No case is left out: the ops above cover every case dir, in the README's numbers."""
    import re

    from tests.catalog.test_conformance_fbc import _cases as fbc_cases

    every = {p.parent.name for p in (SHARED / "cases").glob("*/case.json")}
    covered = {"add": _cases("add"), "deprecatetruncate": _cases("deprecatetruncate"), "list": _cases("list"),
               "migrate": fbc_cases("migrate"), "validate": fbc_cases("validate")}
    assert set().union(*covered.values()) == every
    readme = (SHARED / "README.md").read_text()
    counts = re.search(r"add: (\d+), deprecatetruncate: (\d+), migrate: (\d+), validate: (\d+) "
                       r"\(total (\d+)\), plus (\d+) `list` cases \((\d+)\)", readme)
    assert counts, "README case counts not found"
    add, dt, mig, val, _, lst, total = map(int, counts.groups())
    assert {op: len(ids) for op, ids in covered.items()} == {
        "add": add, "deprecatetruncate": dt, "migrate": mig, "validate": val, "list": lst}
    assert len(every) == total == 75
