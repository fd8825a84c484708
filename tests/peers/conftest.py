"""Fixtures of the peer suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexflow.catalog.db import create_db


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A new, empty index.db (opm's schema, current version)."""
    path = tmp_path / "index.db"
    create_db(path)
    return path
