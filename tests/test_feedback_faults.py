"""The feedback table under faults: racing processes and threads, servers that fail, damaged files.

Every fault here is real: processes and threads really race on one file, a real server on 127.0.0.1
goes away and comes back or refuses everything, files are really truncated and flipped, and a save is
really killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from llm_fixtures import ChatServer
from table_racer import N_SESSIONS, PositionLLM, open_table, tiny_case

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.cli import main
from rec_gym.feedback.table import (NO_RANKING, UNKNOWN, DamagedTable, FeedbackTable, _checksum, make_provenance,
                                    safe_name)
from rec_gym.llm.protocol import BackendUnavailable
from rec_gym.llm.response_cache import ResponseCache
from rec_gym.storage import cache_dir

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
RACE_TRIALS = 20


def expected_full_table() -> np.ndarray:
    dataset, _, provenance, columns = tiny_case()
    full = FeedbackTable(provenance, np.arange(N_SESSIONS), columns, max_rank=10)
    full.fill(dataset, PositionLLM())
    return full.ranks


# ------------------------------------------------------------------------------------------- concurrency

def test_two_processes_saving_disjoint_sessions_at_the_same_moment_lose_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    expected = expected_full_table()
    lost = 0
    for trial in range(RACE_TRIALS):
        path, go = tmp_path / f"t{trial}.npz", tmp_path / f"go{trial}"
        halves = [(0, N_SESSIONS // 2), (N_SESSIONS // 2, N_SESSIONS)]
        ready = [tmp_path / f"ready{trial}-{k}" for k in range(2)]
        procs = [subprocess.Popen([sys.executable, str(TESTS / "table_racer.py"), str(path), str(a), str(b),
                                   str(r), str(go)], env=env) for (a, b), r in zip(halves, ready)]
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.001)
        go.touch()
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
        saved = FeedbackTable.load(path)
        lost += int(np.count_nonzero(saved.ranks == UNKNOWN))
        assert np.array_equal(saved.ranks[saved.ranks != UNKNOWN], expected[saved.ranks != UNKNOWN])
    assert lost == 0


def test_threads_saving_one_table_at_once_lose_nothing(tmp_path):
    dataset, kb, _, _ = tiny_case()
    path = tmp_path / "t.npz"
    n_threads = 8
    tables = [open_table(path) for _ in range(n_threads)]
    blocks = np.array_split(np.arange(N_SESSIONS), n_threads)
    for table, rows in zip(tables, blocks):
        table.fill(dataset, PositionLLM(), table_rows=rows)
    barrier = threading.Barrier(n_threads)

    def save(table):
        barrier.wait()
        table.save()

    threads = [threading.Thread(target=save, args=(t,)) for t in tables]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(FeedbackTable.load(path).ranks, expected_full_table())


def test_a_fill_takes_in_what_another_process_saved_instead_of_computing_it_again(tmp_path):
    dataset, kb, _, _ = tiny_case()
    path = tmp_path / "t.npz"
    first, second = open_table(path), open_table(path)
    first.fill(dataset, PositionLLM(), table_rows=range(10))
    first.save()

    class Counting(PositionLLM):
        calls = 0

        def rank(self, requests):
            Counting.calls += len(requests)
            return super().rank(requests)

    assert second.fill(dataset, Counting(), table_rows=range(20)) == 10 * 4 and Counting.calls == 10 * 4


def test_subproc_vec_env_workers_filling_lazily_lose_no_entry(tmp_path, monkeypatch):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path / "cache"))
    for trial in range(2):
        kwargs = {"n_train": 30, "seed": trial}
        venv = make_vec_env("rec_gym:Re2LLM-Synthetic-v0", n_envs=2, seed=trial, vec_env_cls=SubprocVecEnv, env_kwargs=kwargs)
        venv.reset()
        stepped = set()
        rng = np.random.default_rng(trial)
        for _ in range(40):
            actions = rng.integers(1, 21, size=2)
            _, _, _, infos = venv.step(actions)
            stepped |= {(info["session_index"], int(a)) for info, a in zip(infos, actions)}
        venv.close()
        env = gym.make("Re2LLM-Synthetic-v0", **kwargs)
        ranks = env.unwrapped.task.table.ranks
        missing = [(i, a) for i, a in stepped if ranks[i, a] == UNKNOWN or ranks[i, 0] == UNKNOWN]
        env.close()
        assert missing == [], f"trial {trial}: {len(missing)} stepped entries were lost"


# ------------------------------------------------------------------------------------------- servers

def _free_port() -> int:
    with ChatServer() as server:
        return server.httpd.server_address[1]


def _openai_env(port: int, **kwargs):
    llm_kwargs = {"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 1, "timeout": 2.0}
    return gym.make("Re2LLM-Synthetic-v0", n_train=6, llm="openai:test-model", llm_kwargs=llm_kwargs, **kwargs)


def test_a_live_env_raises_while_the_server_is_down_stores_nothing_and_succeeds_once_it_is_back(tmp_path):
    port = _free_port()
    env = _openai_env(port)
    env.reset(options={"session_index": 2})
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}.*connection"):
        env.step(3)
    task = env.unwrapped.task
    assert task.table.ranks[2, 0] == UNKNOWN and task.table.ranks[2, 3] == UNKNOWN
    env.close()
    table = FeedbackTable.load(task.table.path) if task.table.path.exists() else None
    assert table is None or not np.any(table.ranks != UNKNOWN)
    responses = cache_dir("responses") / "responses.sqlite"
    assert not responses.exists() or len(ResponseCache(responses)) == 0

    with ChatServer(port=port) as server:
        env = _openai_env(port)
        env.reset(options={"session_index": 2})
        _, reward, _, _, info = env.step(3)
        env.close()
    assert sum(server.attempts.values()) == 2  # the plain prompt and the hinted one
    assert info["rank"] >= 0 and info["baseline_rank"] >= 0 and not info["no_ranking"]
    saved = FeedbackTable.load(task.table.path)
    assert saved.ranks[2, 0] != UNKNOWN and saved.ranks[2, 3] != UNKNOWN


def _precompute_openai(port: int, tmp_path: Path) -> list[str]:
    llm_kwargs = json.dumps({"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 1, "timeout": 2.0})
    return ["precompute", "--env", "Re2LLM-Synthetic-v0", "--no-progress", "--table", str(tmp_path / "t.npz"),
            "--response-cache", str(tmp_path / "r.sqlite"), "--env-kwargs", "n_train=4", "llm=openai:test-model",
            f"llm_kwargs={llm_kwargs}"]


def test_precompute_against_a_server_that_refuses_everything_stops_at_once_and_stores_nothing(tmp_path, capsys):
    hints = [""] + list(gym.make("Re2LLM-Synthetic-v0", n_train=4).unwrapped.task.kb)
    with ChatServer(faults={h: ["400"] * 100 for h in hints}) as server:
        assert main(_precompute_openai(server.httpd.server_address[1], tmp_path)) == 2
        assert sum(server.attempts.values()) <= 8  # one batch in flight at most, never retried
    err = capsys.readouterr().err
    assert "HTTP 400" in err and "injected" in err
    assert FeedbackTable.load(tmp_path / "t.npz").n_known == 0 and len(ResponseCache(tmp_path / "r.sqlite")) == 0


def test_precompute_against_a_server_that_is_down_exits_1_with_counters_and_stores_nothing(tmp_path, capsys):
    assert main(_precompute_openai(_free_port(), tmp_path)) == 1
    captured = capsys.readouterr()
    assert "never got an answer" in captured.err
    assert "failures by cause: unanswered:connection" in captured.out
    assert FeedbackTable.load(tmp_path / "t.npz").n_known == 0 and len(ResponseCache(tmp_path / "r.sqlite")) == 0


# ------------------------------------------------------------------------------------------- damaged files

def _filled_table(path: Path) -> FeedbackTable:
    dataset, kb, _, _ = tiny_case()
    table = open_table(path)
    table.fill(dataset, PositionLLM())
    table.save()
    return table


@pytest.mark.parametrize("damage", ["truncated", "empty", "bit flipped"])
def test_a_damaged_table_is_moved_aside_with_a_warning_and_filled_again(tmp_path, capsys, damage):
    path = tmp_path / "t.npz"
    table = _filled_table(path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:  # one bit of one stored rank
        at = bytes(data).index(table.ranks.astype("<i2").tobytes())
        data[at + 2 * 17] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedTable, match="t.npz"):
        FeedbackTable.load(path)
    table = open_table(path)
    assert table.n_known == 0 and (tmp_path / "t.npz.corrupt").read_bytes() == bytes(data)
    assert "moved aside" in capsys.readouterr().err
    dataset, kb, _, _ = tiny_case()
    table.fill(dataset, PositionLLM())
    table.save()
    assert np.array_equal(FeedbackTable.load(path).ranks, expected_full_table())


def _rewrite(path: Path, ranks: np.ndarray, checksum: str | None = None) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["ranks"] = ranks
    arrays["checksum"] = np.array(checksum or _checksum(ranks, arrays["rows"], str(arrays["columns"])))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_a_changed_rank_that_the_zip_format_cannot_see_fails_the_checksum(tmp_path):
    path = tmp_path / "t.npz"
    table = _filled_table(path)
    ranks = table.ranks.copy()
    ranks[0, 0] = 0 if ranks[0, 0] == 1 else 1  # rank 1 <-> not ranked, as a flipped bit would do
    with np.load(path) as data:
        columns_json = str(data["columns"])
    _rewrite(path, ranks, checksum=_checksum(table.ranks, table.rows, columns_json))
    with pytest.raises(DamagedTable, match="checksum"):
        FeedbackTable.load(path)


def test_rank_codes_out_of_range_are_never_used_and_are_computed_again(tmp_path, capsys):
    path = tmp_path / "t.npz"
    table = _filled_table(path)
    ranks = table.ranks.copy()
    ranks[1, 1], ranks[2, 2], ranks[3, 3] = -7, 99, 11  # valid codes are -2..10 for 10 candidates
    _rewrite(path, ranks)
    loaded = open_table(path)
    assert "3 rank code(s) outside -2..10" in capsys.readouterr().err
    assert loaded.ranks[1, 1] == loaded.ranks[2, 2] == loaded.ranks[3, 3] == UNKNOWN
    dataset, kb, _, _ = tiny_case()
    assert loaded.fill(dataset, PositionLLM()) == 3
    assert np.array_equal(loaded.ranks, expected_full_table())


def test_an_env_whose_table_file_is_damaged_warns_and_still_steps(tmp_path, capsys):
    env = gym.make("Re2LLM-Synthetic-v0", n_train=6)
    env.reset(seed=0)
    env.step(1)
    path = env.unwrapped.task.table.path
    env.close()
    path.write_bytes(path.read_bytes()[:40])
    env = gym.make("Re2LLM-Synthetic-v0", n_train=6)
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(1)
    env.close()
    assert terminated and info["rank"] >= 0 and "moved aside" in capsys.readouterr().err


def test_temporary_files_of_a_save_killed_with_sigkill_are_removed_when_the_table_is_next_opened(tmp_path):
    path = tmp_path / "big.npz"
    script = (
        "import numpy as np, sys\n"
        "from rec_gym.feedback.table import FeedbackTable\n"
        "t = FeedbackTable({'dataset': 'big', 'split': 'train'}, np.arange(400_000), [[str(k)] for k in range(21)], path=sys.argv[1])\n"
        "t.ranks[:] = 3\n"
        "while True:\n"
        "    t.save()\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env=env)
    killed_mid_save = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not killed_mid_save:
        if list(tmp_path.glob(".big.npz.*.tmp")):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_mid_save = bool(list(tmp_path.glob(".big.npz.*.tmp")))
            if not killed_mid_save:
                proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env=env)
    proc.kill()
    proc.wait()
    assert killed_mid_save
    table = FeedbackTable.open({"dataset": "big", "split": "train"}, np.arange(400_000), [[str(k)] for k in range(21)],
                               path=path)
    assert not list(tmp_path.glob(".big.npz.*.tmp"))
    assert table.n_known in (0, table.ranks.size)  # the file holds the last whole save, or none was finished


# ------------------------------------------------------------------------------------------- paths

@pytest.mark.parametrize("name", ["../../outside", "/etc/passwd", "..", "a/../../b", "~root"])
def test_a_dataset_name_cannot_put_a_table_outside_the_cache(name):
    dataset, kb, _, _ = tiny_case()
    dataset.name = name
    path = FeedbackTable.default_path(make_provenance(dataset, "train", kb, "x"), np.arange(3))
    assert path.parent == cache_dir("feedback") and "/" not in safe_name(name) and not path.name.startswith(".")


def test_no_ranking_stays_an_answer_and_unknown_is_never_stored_for_no_answer(tmp_path):
    dataset, _, provenance, columns = tiny_case()

    class HalfDown(PositionLLM):
        def rank(self, requests):
            rankings = super().rank(requests)
            rankings[0] = None  # a reply that ranks nothing: an answer
            raise BackendUnavailable("down", rankings, set(range(1, len(requests))))

    table = FeedbackTable(provenance, np.arange(N_SESSIONS), columns, path=tmp_path / "t.npz")
    with pytest.raises(BackendUnavailable):
        table.fill(dataset, HalfDown(), table_rows=[5])
    saved = FeedbackTable.load(tmp_path / "t.npz")
    assert saved.ranks[5].tolist() == [NO_RANKING, UNKNOWN, UNKNOWN, UNKNOWN]


def test_a_table_written_by_rec_gym_0_1_is_read_with_the_env_columns(tmp_path):
    path = tmp_path / "t.npz"
    table = _filled_table(path)
    with open(path, "wb") as fh:  # the 0.1 layout: ranks, rows and provenance only
        np.savez(fh, ranks=table.ranks, rows=table.rows, provenance=np.array(json.dumps(table.provenance, sort_keys=True)))
    reopened = open_table(path)
    assert np.array_equal(reopened.ranks, expected_full_table()) and not (tmp_path / "t.npz.corrupt").exists()
