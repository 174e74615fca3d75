"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # Every test gets its own empty cache, and no dataset folder from the developer's machine.
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path / "rec_gym_cache"))
    monkeypatch.delenv("REC_GYM_DATA", raising=False)


@pytest.fixture
def shared_data() -> Path:
    """The real datasets kept beside the project (``../shared/data``, or ``$REC_GYM_SHARED_DATA``)."""
    path = Path(os.environ.get("REC_GYM_SHARED_DATA") or PROJECT_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path}; set REC_GYM_SHARED_DATA to the folder holding "
                    f"ml-latest-small/, ml-1m-catalog/ and steam-sessions/")
    return path
