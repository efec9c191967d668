"""Fixtures; the helpers themselves are in `helpers` (tests import from there)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Workers


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers()
    try:
        yield w
    finally:
        w.stop_all()


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temporary directory that another user (`nobody`) can reach: pytest's own tmp_path
    sits below a directory only its owner may enter."""
    path = Path(tempfile.mkdtemp(prefix="jd-public-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for below in path.rglob("*"):
            if below.is_dir() and not below.is_symlink():
                below.chmod(0o755)
        shutil.rmtree(path)
