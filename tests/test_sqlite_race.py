"""Processes that open one fresh SQLite cache at the same moment all succeed and all their rows land.

SQLite answers the switch to WAL mode with "database is locked" at once, without its busy timeout,
while another process is creating the same file; before that was retried, 4 processes starting
together failed in about 4 of 10 trials.
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest

from rec_gym.data.embeddings import EmbeddingStore
from rec_gym.llm.response_cache import ResponseCache

N_PROCESSES = 4
N_TRIALS = 12  # at the old failure rate, all 12 trials pass by chance about once in 400 runs
N_ROWS = 5


def _write_responses(folder, worker, start, errors):
    while time.time() < start:  # every process opens the file at the same moment
        pass
    try:
        ResponseCache(folder / "r.sqlite").put_many("b", [(f"k{worker}_{j}", [j, 0]) for j in range(N_ROWS)])
    except Exception as exc:  # noqa: BLE001 - any failure is what the test reports
        errors.put(f"{type(exc).__name__}: {exc}")


def _write_vectors(folder, worker, start, errors):
    while time.time() < start:
        pass
    try:
        EmbeddingStore("enc", folder).put([(f"k{worker}_{j}", np.full(3, j, np.float32)) for j in range(N_ROWS)])
    except Exception as exc:  # noqa: BLE001
        errors.put(f"{type(exc).__name__}: {exc}")


def _count_rows(store) -> int:
    if isinstance(store, ResponseCache):
        return len(store)
    return int(store.conn.execute("SELECT COUNT(*) FROM item_vectors").fetchone()[0])


@pytest.mark.parametrize("writer", [_write_responses, _write_vectors], ids=["response-cache", "embedding-store"])
def test_processes_opening_one_fresh_file_together_all_write(tmp_path, writer):
    fork = multiprocessing.get_context("fork")
    for trial in range(N_TRIALS):
        folder = tmp_path / str(trial)
        folder.mkdir()
        errors = fork.Queue()
        start = time.time() + 0.3
        processes = [fork.Process(target=writer, args=(folder, w, start, errors)) for w in range(N_PROCESSES)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(timeout=120)
        assert [p.exitcode for p in processes] == [0] * N_PROCESSES
        assert errors.empty(), f"trial {trial}: {errors.get()}"
        store = ResponseCache(folder / "r.sqlite") if writer is _write_responses else EmbeddingStore("enc", folder)
        assert _count_rows(store) == N_PROCESSES * N_ROWS


def _hold_the_write_lock(path, held, release):
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    held.set()
    release.wait(60)
    conn.execute("ROLLBACK")


def test_a_cache_another_process_keeps_locked_is_reported_busy_not_damaged(tmp_path, monkeypatch):
    from rec_gym.cli import exit_status
    from rec_gym.llm import response_cache

    path = tmp_path / "r.sqlite"
    ResponseCache(path).put_many("b", [("k", [0])])
    monkeypatch.setattr(response_cache, "BUSY_TIMEOUT", 0.5)
    fork = multiprocessing.get_context("fork")
    held, release = fork.Event(), fork.Event()
    holder = fork.Process(target=_hold_the_write_lock, args=(path, held, release))
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(response_cache.BusyCache, match=r"r\.sqlite stayed locked by another process") as caught:
            ResponseCache(path).put_many("b", [("k2", [1])])
        assert exit_status(caught.value) == 1  # the machine's state, not a damaged file the user must move aside
    finally:
        release.set()
        holder.join(30)
    ResponseCache(path).put_many("b", [("k2", [1])])  # once released, the same write lands
    assert len(ResponseCache(path)) == 2
