"""Fixtures of the hostile-input suite (the runner and judges live in tests/hostile/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.harness import CaseDirs


@pytest.fixture
def case_dirs(tmp_path: Path) -> CaseDirs:
    """HOME, TMPDIR, cache and output dirs of one case, under the test's tmp_path."""
    return CaseDirs.create(tmp_path / "case")
