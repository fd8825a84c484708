"""Replay every recorded opm migrate / validate case, and the FBC of successful add / deprecate cases.

migrate output must be byte-identical to opm's; validate errors are compared as sets of leaf
paths (opm's tree children come in Go-map order). migrate runs with the scratch dir as cwd and
the db named index.db, as the recording did, so error texts name "index.db".
"""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from indexflow.cli import main
from tests.conftest import SHARED as SHARED_ROOT
from tests.conftest import WITHOUT_SHARED, shared_opted_out

SHARED = SHARED_ROOT / "conformance"
# skipped only on an explicit opt-out (tests/conftest.py stops the session otherwise)
pytestmark = [pytest.mark.conformance,
              pytest.mark.skipif(shared_opted_out(), reason=f"{WITHOUT_SHARED}=1 and ../shared is missing")]


def _cases(*ops: str, need: str | None = None) -> list[str]:
    if not SHARED.is_dir():
        return []
    out = []
    for p in sorted((SHARED / "cases").glob("*/case.json")):
        case = json.loads(p.read_text())
        if case["op"] in ops and (need is None or case["expect"].get(need)):
            out.append(p.parent.name)
    return out


def _case(case_id: str) -> tuple[Path, dict]:
    case_dir = SHARED / "cases" / case_id
    return case_dir, json.loads((case_dir / "case.json").read_text())


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _same_tree(expected: Path, got: Path) -> None:
    """Byte-identical directory trees (same files, same content)."""
    want = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    have = sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file())
    assert have == want
    for rel in want:
        assert filecmp.cmp(expected / rel, got / rel, shallow=False), f"{rel} differs"


def _migrate(db: Path, out: Path, level: str | None = None, fmt: str = "json") -> tuple[int, str]:
    """`indexflow db migrate index.db <out>` run from the db's directory."""
    argv = ["db", "migrate", db.name, str(out)]
    if level:
        argv += ["--migrate-level", level]
    if fmt != "json":
        argv += ["-o", fmt]
    cwd = os.getcwd()
    os.chdir(db.parent)
    try:
        rc, _, err = _run(argv)
    finally:
        os.chdir(cwd)
    return rc, err


@pytest.mark.parametrize("case_id", _cases("migrate"))
def test_migrate(case_id: str, tmp_path: Path) -> None:
    case_dir, case = _case(case_id)
    db = tmp_path / "index.db"
    shutil.copyfile(case_dir / case["start_db"], db)
    level = case.get("migrate_level")
    rc, err = _migrate(db, tmp_path / "out", level, case.get("output_format", "json"))
    expect = case["expect"]
    assert rc == expect["exit_code"], err
    if rc:
        assert err.strip() == f"Error: {expect['error']}"
        assert not (tmp_path / "out").exists()
        return
    _same_tree(case_dir / (expect["fbc_csv_metadata"] if level else expect["fbc"]), tmp_path / "out")


@pytest.mark.parametrize("case_id", _cases("validate"))
def test_validate(case_id: str) -> None:
    from indexflow.catalog.validate import validate_report

    case_dir, case = _case(case_id)
    expect = case["expect"]
    rc, out, err = _run(["fbc", "validate", str(case_dir / case["fbc_dir"]), "-o", "json"])
    assert rc == expect["exit_code"], err
    assert json.loads(out)["passed"] is expect["json_output"]["passed"]
    assert sorted(validate_report(case_dir / case["fbc_dir"]).leaves) == sorted(expect["validate_errors"])
    if len(expect["validate_errors"]) == 1 and len(expect["validate_errors"][0]) == 1:  # order-free text
        assert json.loads(out)["error"]["message"] == expect["error"]


def _apply(case_dir: Path, case: dict, db: Path) -> None:
    """Run the case's add / deprecatetruncate on a copy of its start db."""
    if case["op"] == "add":
        index = {e["ref"]: SHARED / e["dir"]
                 for e in json.loads((SHARED / "bundles" / "index.json").read_text())}
        mode = ["--mode", case["mode"]] if case.get("mode") not in (None, "replaces") else []
        argv = ["db", "add", str(db), *mode, *[a for r in case["bundles"] for a in ("-b", f"{r}={index[r]}")]]
    else:
        extra = ["--allow-package-removal"] if case.get("allow_package_removal") else []
        argv = ["db", "deprecatetruncate", str(db), *extra, *[a for r in case["bundles"] for a in ("-b", r)]]
    if case.get("start_db"):
        shutil.copyfile(case_dir / case["start_db"], db)
    rc, _, err = _run(argv)
    assert rc == 0, err


@pytest.mark.parametrize("case_id", _cases("add", "deprecatetruncate", need="fbc"))
def test_fbc_after_db_change(case_id: str, tmp_path: Path) -> None:
    """The FBC of the db an add / deprecatetruncate produced, at both migration levels."""
    case_dir, case = _case(case_id)
    db = tmp_path / "index.db"
    _apply(case_dir, case, db)
    expect = case["expect"]
    for level, key in ((None, "fbc"), ("bundle-object-to-csv-metadata", "fbc_csv_metadata")):
        if not expect.get(key):
            continue
        out = tmp_path / f"out-{key}"
        rc, err = _migrate(db, out, level)
        assert rc == 0, err
        _same_tree(case_dir / expect[key], out)
