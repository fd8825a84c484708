"""`indexflow db|fbc ...` builds only the catalog verbs' parser (start-up time of `fbc validate`);
the other groups, and the catalog verbs themselves, must read exactly as with every group built."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from indexflow.app.cli import SELF_CONTAINED, build_parser

ROOT = Path(__file__).resolve().parents[2]


def _help(argv: list[str], words: list[str]) -> tuple[int, str]:
    """What `indexflow WORDS -h` prints with the parser built for `argv`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), pytest.raises(SystemExit) as exc:
        build_parser(argv).parse_args([*words, "-h"])
    return exc.value.code, out.getvalue()


@pytest.mark.parametrize("word", sorted(SELF_CONTAINED))
def test_a_self_contained_group_reads_as_with_every_group_built(word: str) -> None:
    """A stale SELF_CONTAINED entry (a group moved to another module) would break its commands."""
    verbs = {"db": ["list", "add", "deprecatetruncate", "migrate"], "fbc": ["validate", "merge"]}[word]
    for words in [[word], *([word, verb] for verb in verbs)]:
        assert _help(words, words) == _help([], words) and _help(words, words)[0] == 0


def test_fbc_validate_imports_no_other_group(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "catalog.json").write_text(json.dumps({"schema": "olm.package", "name": "p"}))
    code = ("import json, sys\nfrom indexflow.app.cli import main\n"
            f"rc = main(['fbc', 'validate', {str(tmp_path)!r}])\n"
            "print(json.dumps([rc, sorted(m for m in sys.modules if m.startswith(('sandbox', 'yaml', 'indexflow.app.')))]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    rc, modules = json.loads(proc.stdout.splitlines()[-1])
    assert "package must contain at least one channel" in proc.stderr  # (it did validate)
    assert (rc, modules) == (1, ["indexflow.app.cli"])


def test_other_groups_are_all_still_offered() -> None:
    code, text = _help([], [])
    assert code == 0 and all(word in text for word in ("db", "fbc", "sandbox", "merge", "serve", "reconcile"))
