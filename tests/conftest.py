"""Fixtures shared by the test modules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
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


def write_session_folder(folder: Path, items: list[dict], n_sessions: int = 40) -> Path:
    """A custom dataset in the session-folder format: ``items`` and ``n_sessions`` sessions of 5 history
    items and a target drawn from them (seeded), split 30/5/5 as train/val/test."""
    folder.mkdir()
    with open(folder / "items.jsonl", "w") as fh:
        for item in items:
            fh.write(json.dumps(item) + "\n")
    rng = np.random.default_rng(1)
    with open(folder / "sessions.jsonl", "w") as fh:
        for s in range(n_sessions):
            chosen = rng.choice(len(items), size=6, replace=False).tolist()
            split = "train" if s < 30 else ("val" if s < 35 else "test")
            fh.write(json.dumps({"session_id": f"s{s}", "history": chosen[:-1], "target": chosen[-1],
                                 "split": split}) + "\n")
    return folder
