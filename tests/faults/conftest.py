"""Fixtures of the fault catalogue (docs/reliability.md): each test breaks a home of its own."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def home_copy(warehouse, tmp_path):
    """A private copy of the session's SQLite warehouse (built by the real nightly flow), to break
    freely: ``cp -a`` of the home, as a user would copy it."""
    from etl.core.config import load_settings

    src = warehouse["settings"].home
    dst = tmp_path / "home"
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("*.lock"))
    return load_settings(dst)
