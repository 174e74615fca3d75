"""One feedback table file serves every reader: one-hint readers take their columns by key, whatever
hint-set columns the composition and team envs added to the same file."""

from __future__ import annotations

import argparse
import csv

import gymnasium as gym
import numpy as np
import pytest
import yaml

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.cli import agents as cli
from rec_gym.agents.baselines import BestFixedHint, FixedHint, LinUCB, NoHint, Oracle
from rec_gym.agents.evaluation import evaluate
from rec_gym.agents.hint_sets import train_compose, train_team
from rec_gym.cli import main
from rec_gym.feedback.table import UNKNOWN, FeedbackTable, hint_set, kb_columns

ONE_HINT = "Re2LLM-Synthetic-v0"
KW = {"n_train": 16}
HP = {"n_envs": 2, "n_timesteps": 128, "policy": "MlpPolicy", "n_steps": 64, "batch_size": 64, "n_epochs": 1,
      "gamma": 1.0, "policy_kwargs": "dict(net_arch=[8])"}
N_ACTIONS = 21  # no hint and the 20 hints of the synthetic knowledge base


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """A cache where a composition run and a team run trained, and hint-set precomputes sampled val and test."""
    cache = tmp_path_factory.mktemp("shared_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REC_GYM_CACHE", str(cache))
        train_compose("Re2LLMCompose-Synthetic-v0", "maskable_ppo", {**KW, "max_hints": 3}, seed=0, hyperparams=HP)
        train_team({**KW, "n_agents": 3}, seed=0, hyperparams=HP)
        for split in ("val", "test"):
            assert main(["precompute", "--env", "Re2LLMCompose-Synthetic-v0", "--split", split, "--no-progress",
                         "--env-kwargs", "n_train=16", "--max-hints", "2", "--sets-per-session", "3",
                         "--sessions-per-batch", "64"]) == 0
    return cache


def table_of(split: str) -> FeedbackTable:
    """The table file the one-hint env of ``split`` reads, as stored (columns in file order)."""
    env = gym.make(ONE_HINT, split=split, **KW)
    path = env.unwrapped.task.table.path
    env.close()
    return FeedbackTable.load(path)


def single_hint_columns(table: FeedbackTable) -> list[int]:
    """The columns of no hint and each hint of the one-hint env's knowledge base in ``table``, by key."""
    env = gym.make(ONE_HINT, **KW)
    kb = env.unwrapped.task.kb
    env.close()
    return [table.column(c) for c in kb_columns(kb)]


def one_hint_readers() -> dict[str, object]:
    """What every one-hint reader reports in the current cache."""
    best = BestFixedHint.fit(ONE_HINT, KW)
    train_env = gym.make(ONE_HINT, split="train", **KW)
    linucb = LinUCB.for_env(train_env, seed=0).fit(train_env, n_steps=64)
    train_env.close()
    out: dict[str, object] = {"best fixed means": best.train_mean_rewards, "best fixed action": best.action}
    for policy in (NoHint(), FixedHint(7), best, linucb, Oracle()):
        result = evaluate(policy, ONE_HINT, split="test", env_kwargs=KW)
        out[policy.name] = (result.metrics, result.actions.tolist(), result.ranks.tolist())
    stepped = evaluate(FixedHint(7), ONE_HINT, split="val", env_kwargs=KW, mode="step", max_sessions=30)
    out["fixed hint 7, step mode"] = (stepped.metrics, stepped.ranks.tolist())
    return out


def test_every_one_hint_reader_reports_in_a_shared_cache_what_it_reports_in_a_fresh_one(shared_cache, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(shared_cache))
    assert min(table_of(split).ranks.shape[1] for split in ("train", "val", "test")) > N_ACTIONS  # sets are there
    shared = one_hint_readers()
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path / "fresh"))
    fresh = one_hint_readers()
    assert table_of("train").ranks.shape[1] == N_ACTIONS  # the readers added no columns of their own
    np.testing.assert_array_equal(shared.pop("best fixed means"), fresh.pop("best fixed means"))
    assert shared == fresh
    assert fresh["oracle"][0]["NDCG@10"] > fresh["best fixed hint"][0]["NDCG@10"] > fresh["no hint"][0]["NDCG@10"]


def test_precompute_of_one_hint_shards_merges_into_a_shared_table(shared_cache, monkeypatch, capsys):
    monkeypatch.setenv("REC_GYM_CACHE", str(shared_cache))
    args = ["precompute", "--env", ONE_HINT, "--split", "val", "--no-progress", "--env-kwargs", "n_train=16"]
    for shard in ("0/2", "1/2"):
        assert main(args + ["--shard", shard]) == 0
    # The merged table's hint-set columns stay partly unknown: they are not this run's to fill or report.
    assert main(args + ["--merge"]) == 0
    out = capsys.readouterr()
    assert f"merged 2 shards; {400 * N_ACTIONS}/{400 * N_ACTIONS} pairs known" in out.out and "unknown" not in out.err
    table = table_of("val")
    assert (table.ranks == UNKNOWN).any() and not (table.ranks[:, single_hint_columns(table)] == UNKNOWN).any()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{400 * N_ACTIONS}/{400 * N_ACTIONS} pairs known (0 with no usable ranking); 0 filled" in out


def test_the_benchmark_in_a_shared_cache_fills_only_missing_one_hint_pairs_and_completes(shared_cache, tmp_path,
                                                                                         monkeypatch, capsys):
    monkeypatch.setenv("REC_GYM_CACHE", str(shared_cache))
    train = gym.make(ONE_HINT, split="train", **KW)
    train.unwrapped.task.fill_all(progress=False)  # train's one-hint pairs all known, its hint sets not
    train.close()
    missing = {}
    for split in ("train", "val", "test"):
        table = table_of(split)
        missing[split] = int((table.ranks[:, single_hint_columns(table)] == UNKNOWN).sum())
    assert missing["train"] == 0 and (table_of("train").ranks == UNKNOWN).any()
    # The quick config's code path at test size: its baselines and one RL algorithm, one seed, in process.
    config = {"name": "shared", "algos": ["a2c"], "seeds": [0], "timesteps": 128, "val_every": 128, "workers": 1,
              "linucb": {"steps": 64}, "bootstrap_reps": 100,
              "envs": [{"id": ONE_HINT, "label": "Synthetic", "kwargs": KW}]}
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    cli.configure_benchmark(parser)
    capsys.readouterr()
    assert cli.run_benchmark(parser.parse_args(["--config", str(path), "--out", str(tmp_path / "out")])) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("filling")]
    assert printed == [f"filling {missing[split]} (session, hint) pairs of the {split} feedback table of Synthetic"
                       for split in ("train", "val", "test") if missing[split]]
    rows = {r["method"]: float(r["NDCG@10"]) for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    best = evaluate(BestFixedHint.fit(ONE_HINT, KW), ONE_HINT, split="test", env_kwargs=KW)
    assert rows["best fixed hint"] == pytest.approx(best["NDCG@10"])
    assert rows["oracle (upper bound)"] == max(rows.values()) and "A2C" in rows


def test_a_one_hint_env_opening_a_file_that_starts_with_other_columns_puts_its_own_first(tmp_path):
    path = tmp_path / "t.npz"
    env = gym.make(ONE_HINT, split="train", feedback_table=str(path), **KW)
    task = env.unwrapped.task
    pair = hint_set([task.kb[0], task.kb[1]])
    # A file written with a hint set first and the single hints in reverse order.
    written = FeedbackTable(task.table.provenance, task.rows, [pair] + kb_columns(task.kb)[::-1], path=path,
                            max_rank=task.table.max_rank)
    written.fill(task.dataset, task.backend)
    written.save()
    env.close()
    env = gym.make(ONE_HINT, split="train", feedback_table=str(path), **KW)
    task = env.unwrapped.task
    assert task.table.columns == kb_columns(task.kb) + [pair]
    np.testing.assert_array_equal(task.action_columns, np.arange(N_ACTIONS))
    ndcg = task.ndcg_of_rank[np.maximum(written.ranks, 0)]
    for i, a in [(0, 1), (3, 7), (15, 20)]:
        env.reset(options={"session_index": i})
        reward = env.step(a)[1]
        assert reward == pytest.approx(ndcg[i, written.column([task.kb[a - 1]])] - ndcg[i, written.column(())])
    # A table object whose single hints are not its first columns is refused, naming the way out.
    task.table = FeedbackTable.load(path)
    with pytest.raises(RuntimeError, match=r"FeedbackTable.open\(\.\.\., kb_columns\(kb\)\)"):
        task.action_columns
    env.close()
