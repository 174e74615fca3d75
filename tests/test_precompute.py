"""`rec-gym precompute`: fills the table the env reads, survives SIGKILL, shards and merges, keeps provenance."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from llm_fixtures import SlowFakeBackend

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.cli import main
from rec_gym.feedback.table import NO_RANKING, UNKNOWN, FeedbackTable, ProvenanceMismatch
from rec_gym.llm.protocol import target_rank
from rec_gym.llm.response_cache import ResponseCache
from rec_gym.llm.simulated import SimulatedLLM

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 24  # sessions of the synthetic train split; x 21 actions = 504 (session, hint) pairs
PAIRS = N_TRAIN * 21


def precompute(*extra: str) -> int:
    return main(["precompute", "--env", "Re2LLM-Synthetic-v0", "--no-progress", "--env-kwargs", f"n_train={N_TRAIN}",
                 *extra])


def test_precompute_fills_the_table_the_env_then_reads(capsys):
    assert precompute() == 0
    out = capsys.readouterr().out
    assert f"{PAIRS}/{PAIRS} pairs known" in out and f"{PAIRS} filled by this run" in out
    # The simulated ranker is cheap and deterministic: the table is its record, no response cache is written.
    assert "no response cache" in out and not list(Path(os.environ["REC_GYM_CACHE"]).rglob("*.sqlite"))
    env = gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN)
    task = env.unwrapped.task
    assert task.table.complete and task.table.path.exists()
    # The stored ranks are the simulated LLM's ranks of the target.
    llm = SimulatedLLM()
    for i, a in [(0, 0), (3, 5), (N_TRAIN - 1, 20)]:
        request = task.table.request(task.dataset, i).with_hint(task.kb.hint_for_action(a))
        expected = target_rank(llm.rank([request])[0], int(task.dataset.target_pos[task.rows[i]]))
        assert task.table.ranks[i, a] == expected
    # A second run has nothing left to do.
    assert precompute() == 0
    assert "; 0 filled by this run" in capsys.readouterr().out


def _run_cli(tmp_path: Path, name: str, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "REC_GYM_TEST_CALL_LOG": str(tmp_path / f"{name}.log"), "REC_GYM_TEST_DELAY": str(delay)}
    cmd = [sys.executable, "-m", "rec_gym.cli", "precompute", "--env", "Re2LLM-Synthetic-v0", "--no-progress",
           "--env-kwargs", f"n_train={N_TRAIN}", "--backend-factory", "llm_fixtures:make_slow_backend",
           "--table", str(tmp_path / f"{name}.npz"), "--response-cache", str(tmp_path / f"{name}.sqlite")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if len(line) == 32] if path.exists() else []


def test_sigkill_mid_run_loses_no_finished_entry_and_repeats_none(tmp_path):
    killed = _run_cli(tmp_path, "resumed", delay=0.004)
    deadline = time.monotonic() + 120
    # Batches commit after requests 63, 126, 168, 231, ...: stop mid-batch, with requests in flight.
    while len(_lines(tmp_path / "resumed.log")) < 190:
        assert killed.poll() is None, killed.stdout.read()
        assert time.monotonic() < deadline, "the precompute never got going"
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(30)
    assert killed.returncode == -signal.SIGKILL
    finished = {row[0] for row in ResponseCache(tmp_path / "resumed.sqlite").dump()}
    assert 0 < len(finished) < PAIRS  # the kill landed mid-run
    print(f"killed after {len(_lines(tmp_path / 'resumed.log'))} computed requests, {len(finished)} committed")

    resumed = _run_cli(tmp_path, "resumed", delay=0.0)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    uninterrupted = _run_cli(tmp_path, "clean", delay=0.0)
    out, _ = uninterrupted.communicate(timeout=120)
    assert uninterrupted.returncode == 0, out

    computed = collections.Counter(_lines(tmp_path / "resumed.log"))
    assert all(computed[key] == 1 for key in finished)  # nothing finished before the kill was redone
    assert sum(computed.values()) - PAIRS <= 64  # at most the one batch in flight at the kill, redone
    assert set(computed) == set(_lines(tmp_path / "clean.log"))
    assert ResponseCache(tmp_path / "resumed.sqlite").dump() == ResponseCache(tmp_path / "clean.sqlite").dump()
    a, b = FeedbackTable.load(tmp_path / "resumed.npz"), FeedbackTable.load(tmp_path / "clean.npz")
    assert a.provenance == b.provenance and a.provenance["backend"] == SlowFakeBackend(".").name
    np.testing.assert_array_equal(a.ranks, b.ranks)
    assert a.complete and np.any(a.ranks == NO_RANKING)  # the fake's "no ranking" answers are kept too


def test_shards_merge_into_the_same_table_as_one_run(tmp_path, capsys):
    table = tmp_path / "t.npz"
    assert precompute("--table", str(table), "--shard", "0/3") == 0
    assert precompute("--table", str(table), "--merge") == 2
    assert "shard(s) [1, 2] of 3 are missing" in capsys.readouterr().err
    first = FeedbackTable.load(tmp_path / "t.shard-0-of-3.npz")
    assert np.all(first.ranks[:8] != UNKNOWN) and np.all(first.ranks[8:] == UNKNOWN)
    for i in (1, 2):
        assert precompute("--table", str(table), "--shard", f"{i}/3") == 0
    assert precompute("--table", str(table), "--merge") == 0
    assert precompute("--table", str(tmp_path / "whole.npz"), "--response-cache", str(tmp_path / "other.sqlite")) == 0
    merged, whole = FeedbackTable.load(table), FeedbackTable.load(tmp_path / "whole.npz")
    assert merged.complete and merged.provenance == whole.provenance
    np.testing.assert_array_equal(merged.ranks, whole.ranks)


def test_a_server_that_never_answers_stops_the_run_and_a_rerun_finishes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REC_GYM_TEST_CALL_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("REC_GYM_TEST_FLAG", str(tmp_path / "flag"))
    args = ("--table", str(tmp_path / "t.npz"), "--backend-factory", "llm_fixtures:make_flaky_backend",
            "--sessions-per-batch", "2")
    assert precompute(*args) == 1
    assert "never got an answer" in capsys.readouterr().err
    partial = FeedbackTable.load(tmp_path / "t.npz")
    assert partial.n_known == 2 * 21  # the first batch; the unanswered second one is not recorded as "no ranking"
    assert precompute(*args) == 0
    done = FeedbackTable.load(tmp_path / "t.npz")
    assert done.complete
    clean = SlowFakeBackend(tmp_path / "clean.log")
    env = gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN, llm=clean, feedback_table=tmp_path / "t.npz")
    task = env.unwrapped.task
    for i in (0, 5, N_TRAIN - 1):
        requests = [task.table.request(task.dataset, i).with_hint(task.kb.hint_for_action(a)) for a in range(21)]
        target = int(task.dataset.target_pos[task.rows[i]])
        expected = [NO_RANKING if r is None else target_rank(r, target) for r in clean.rank(requests)]
        np.testing.assert_array_equal(done.ranks[i], expected)


RACE_TRIALS = 20
RACERS = {"pairs": ["--max-hints", "2"], "triples": ["--max-hints", "3"],
          "sampled": ["--max-hints", "3", "--sets-per-session", "2"]}


def test_hint_set_precomputes_racing_on_one_table_all_succeed_and_lose_nothing(tmp_path):
    # Each run adds its own sets to the table while the others save theirs into the same file: a run
    # must find its columns by key and report on those, whatever columns it takes in meanwhile.
    base = ["--env", "Re2LLMCompose-Synthetic-v0", "--no-progress", "--env-kwargs", "n_train=2"]
    assert main(["precompute", *base, "--max-hints", "1", "--table", str(tmp_path / "warm.npz")]) == 0  # dataset cache
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    racers = {name: subprocess.Popen([sys.executable, str(ROOT / "tests" / "precompute_racer.py"), str(tmp_path), name,
                                      str(RACE_TRIALS), *base, *extra], env=env, stdout=subprocess.PIPE, text=True)
              for name, extra in RACERS.items()}
    for t in range(RACE_TRIALS):
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"{name}-ready-{t}").exists() for name in RACERS):
            assert all(p.poll() is None for p in racers.values()) and time.monotonic() < deadline, \
                f"a racer stopped before trial {t}"
            time.sleep(0.001)
        (tmp_path / f"go-{t}").touch()  # the three runs of trial t start together on table-t.npz
    statuses = {name: p.communicate(timeout=300)[0].split() for name, p in racers.items()}
    assert [p.returncode for p in racers.values()] == [0] * len(RACERS), statuses
    for name in RACERS:
        failed = [t for t in range(RACE_TRIALS) if statuses[name][2 * t + 1] != "0"]
        assert not failed, f"{name} failed {len(failed)} of {RACE_TRIALS} trials; trial {failed[0]} said:\n" + \
            (tmp_path / f"{name}-{failed[0]}.out").read_text()
    wanted = {"pairs": 2 * 211, "triples": 2 * 1351, "sampled": 2 * (21 + 2)}  # sessions x (no hint, 20 hints, sets)
    for t in range(RACE_TRIALS):
        table = FeedbackTable.load(tmp_path / f"table-{t}.npz")
        assert table.ranks.shape == (2, 1351) and table.complete  # every set of up to 3 of the 20 hints, no entry lost
        for name, total in wanted.items():
            assert f"{total}/{total} pairs known" in (tmp_path / f"{name}-{t}.out").read_text()


def test_an_env_refuses_a_table_made_with_other_settings(tmp_path):
    table = tmp_path / "t.npz"
    assert precompute("--table", str(table)) == 0
    with pytest.raises(ProvenanceMismatch, match="backend") as err:
        gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN, llm=SimulatedLLM(seed=1), feedback_table=table)
    assert "simulated-v2" in str(err.value) and "rec-gym precompute" in str(err.value)
    with pytest.raises(ProvenanceMismatch, match="kb_hash"):
        gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN, kb=["Prefer old films.", "Prefer new films."],
                 feedback_table=table)
    with pytest.raises(ProvenanceMismatch, match="split"):
        gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN, split="val", feedback_table=table)
    env = gym.make("Re2LLM-Synthetic-v0", n_train=N_TRAIN, feedback_table=table)
    assert env.unwrapped.task.table.complete


def test_bad_arguments_name_the_value_and_the_fix(capsys):
    assert precompute("--shard", "3/3") == 2
    assert "--shard '3/3'" in capsys.readouterr().err
    assert main(["precompute", "--env", "Re2LLM-Nope-v0", "--no-progress"]) == 2
    assert "rec-gym envs" in capsys.readouterr().err
    assert precompute("--env-kwargs", "colour=blue") == 2
    assert "colour" in capsys.readouterr().err
