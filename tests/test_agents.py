"""Agents: the policy protocol, the baselines, and evaluation over every session of a split."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.agents import (BestFixedHint, FixedHint, LinUCB, NoHint, Oracle, Policy, UniformRandomHint, evaluate,
                            predict_actions)
from rec_gym.agents.baselines import mean_rewards

ENV_ID = "Re2LLM-Synthetic-v0"
CUSTOM_AGENT_GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "custom_agent.md"
SMALL = {"n_train": 300}  # a 300-session train split keeps table fills to a few seconds


@pytest.fixture(scope="session")
def agents_cache(tmp_path_factory):
    # The synthetic dataset, its observations and feedback tables cost seconds to build: one cache for all agent tests.
    return tmp_path_factory.getbasetemp() / "agents-cache"


@pytest.fixture(autouse=True)
def _use_agents_cache(agents_cache, monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(agents_cache))


@pytest.fixture
def test_env():
    env = gym.make(ENV_ID, split="test", **SMALL)
    yield env
    env.close()


def _ndcg10(rank: np.ndarray) -> np.ndarray:
    rank = np.asarray(rank, dtype=float)
    return np.where((rank >= 1) & (rank <= 10), 1.0 / np.log2(np.maximum(rank, 1) + 1), 0.0)


def test_sb3_models_and_baselines_satisfy_the_policy_protocol():
    from stable_baselines3 import PPO

    env = gym.make(ENV_ID, split="train", **SMALL)
    for policy in (NoHint(), UniformRandomHint(env.action_space), Oracle(env), LinUCB.for_env(env), PPO("MlpPolicy", env)):
        assert isinstance(policy, Policy), type(policy).__name__
    env.close()


def test_evaluate_ndcg_equals_a_hand_computation_from_the_feedback_table(test_env):
    result = evaluate(FixedHint(3), test_env, split="test")
    ranks = test_env.unwrapped.task.table.ranks.astype(int)
    with_hint, without = np.where(ranks[:, 3] == -2, 0, ranks[:, 3]), np.where(ranks[:, 0] == -2, 0, ranks[:, 0])
    assert (with_hint >= 0).all() and (without >= 0).all(), "evaluate left table entries unfilled"
    assert result.n_sessions == test_env.unwrapped.task.n_sessions
    assert result["NDCG@10"] == pytest.approx(_ndcg10(with_hint).mean())
    assert result["HR@5"] == pytest.approx(np.mean((with_hint >= 1) & (with_hint <= 5)))
    assert result["NDCG@1"] == pytest.approx(np.mean(with_hint == 1))
    assert result["mean_reward"] == pytest.approx((_ndcg10(with_hint) - _ndcg10(without)).mean())
    assert result["beats_no_hint"] == pytest.approx(np.mean(_ndcg10(with_hint) > _ndcg10(without)))


def test_evaluate_fills_only_the_entries_it_needs(tmp_path):
    env = gym.make(ENV_ID, split="test", feedback_table=str(tmp_path / "fresh.npz"), **SMALL)
    table = env.unwrapped.task.table
    assert table.n_known == 0
    evaluate(FixedHint(2), env, split="test")
    known = table.ranks != -1
    assert known[:, [0, 2]].all() and not known[:, [1] + list(range(3, table.ranks.shape[1]))].any()
    env.close()


def test_oracle_is_at_least_best_fixed_which_beats_no_hint_on_the_same_table(test_env):
    best = BestFixedHint.fit(ENV_ID, SMALL)
    train_means = best.train_mean_rewards
    assert train_means[best.action] == train_means.max() >= train_means[0] == 0.0
    oracle, fixed, none = (evaluate(p, test_env, split="test") for p in (Oracle(), best, NoHint()))
    assert oracle["NDCG@10"] >= fixed["NDCG@10"] > none["NDCG@10"] + 0.05
    # Session by session the oracle is at least as good as every single hint, and never hurts.
    ndcg = test_env.unwrapped.task.ndcg_of_rank[test_env.unwrapped.task.rank(slice(None), slice(None))]
    assert np.allclose(_ndcg10(oracle.ranks), ndcg.max(axis=1))
    assert oracle["hurts_no_hint"] == 0.0 and none["mean_reward"] == 0.0


def test_step_mode_walks_the_env_and_agrees_with_the_table(test_env):
    policy = LinUCB.for_env(test_env, seed=3)
    policy.theta = np.random.default_rng(0).normal(size=policy.theta.shape)
    for p in (policy, Oracle()):
        table = evaluate(p, test_env, split="test", max_sessions=60)
        step = evaluate(p, test_env, split="test", max_sessions=60, mode="step")
        assert np.array_equal(table.actions, step.actions) and table.metrics == step.metrics


def test_an_env_on_another_split_is_remade_with_the_same_kwargs():
    train_env = gym.make(ENV_ID, split="train", **SMALL)
    result = evaluate(NoHint(), train_env, split="val")
    val_env = gym.make(ENV_ID, split="val", **SMALL)
    assert result.n_sessions == val_env.unwrapped.task.n_sessions != train_env.unwrapped.task.n_sessions
    assert np.array_equal(result.baseline_ranks, val_env.unwrapped.task.rank(slice(None), 0))
    train_env.close()
    val_env.close()


def test_oracle_predict_reads_the_session_the_env_shows(test_env):
    oracle = Oracle(test_env)
    for i in (0, 7, 42):
        obs, _ = test_env.reset(options={"session_index": i})
        action, _ = oracle.predict(obs)
        assert action == Oracle.predict_sessions(test_env.unwrapped.task, [i])[0]


def test_single_observation_policies_are_asked_one_observation_at_a_time(test_env):
    class FirstFeatureSign:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            assert np.ndim(obs) == 1, "this policy only takes one observation"
            return (1 if obs[0] > 0 else 2), state

    obs = test_env.unwrapped.task.observations
    actions = predict_actions(FirstFeatureSign(), obs)
    assert np.array_equal(actions, np.where(obs[:, 0] > 0, 1, 2))
    assert evaluate(FirstFeatureSign(), test_env)["NDCG@10"] == evaluate(_Batched(actions), test_env)["NDCG@10"]


class _Batched:
    def __init__(self, actions):
        self.actions = actions

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return self.actions[: len(obs)], state


def test_predict_actions_refuses_fractional_actions():
    class Fractional:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.full(len(np.atleast_2d(obs)), 1.5), state

    with pytest.raises(ValueError, match="non-integer actions"):
        predict_actions(Fractional(), np.zeros((3, 4), dtype=np.float32))


def test_uniform_random_hint_is_seeded_and_always_appends_a_hint():
    obs = np.zeros((500, 8), dtype=np.float32)
    a = UniformRandomHint(21, seed=1).predict(obs)[0]
    assert np.array_equal(a, UniformRandomHint(21, seed=1).predict(obs)[0])
    assert not np.array_equal(a, UniformRandomHint(21, seed=2).predict(obs)[0])
    assert a.min() == 1 and a.max() == 20


def test_linucb_beats_random_hint_after_fitting_online_on_train():
    train_env = gym.make(ENV_ID, split="train", **SMALL)
    linucb = LinUCB.for_env(train_env, alpha=0.5, ridge=0.1, seed=0).fit(train_env, n_steps=3000)
    assert linucb.counts.sum() == 3000 and (linucb.counts > 0).sum() > 5  # it explored
    random_hint = evaluate(UniformRandomHint(train_env.action_space, seed=0), ENV_ID, "val", SMALL)
    assert evaluate(linucb, ENV_ID, "val", SMALL)["NDCG@10"] > random_hint["NDCG@10"] + 0.05
    train_env.close()


def test_linucb_update_matches_a_direct_ridge_solution():
    rng = np.random.default_rng(0)
    policy = LinUCB(3, dim=4, ridge=0.5)
    x, r = rng.normal(size=(30, 4)), rng.normal(size=30)
    for xi, ri in zip(x, r):
        policy.update(xi, 1, ri)
    X = np.hstack([x, np.ones((30, 1))])
    assert np.allclose(policy.theta[1], np.linalg.solve(X.T @ X + 0.5 * np.eye(5), X.T @ r))
    assert np.allclose(policy.theta[[0, 2]], 0.0)


def test_best_fixed_hint_is_the_argmax_of_train_mean_rewards():
    env = gym.make(ENV_ID, split="train", **SMALL)
    means = mean_rewards(env.unwrapped.task)
    ranks = env.unwrapped.task.rank(slice(None), slice(None))
    assert means[5] == pytest.approx((_ndcg10(ranks[:, 5]) - _ndcg10(ranks[:, 0])).mean())
    assert BestFixedHint.fit(env).action == int(np.argmax(means))
    env.close()


def test_the_custom_agent_guides_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", CUSTOM_AGENT_GUIDE.read_text(encoding="utf-8"), flags=re.S)
    agent_block = next(b for b in blocks if "def predict(self, obs" in b)
    scores_block = next(b for b in blocks if "evaluate(agent" in b)
    assert len(agent_block.splitlines()) <= 30
    namespace: dict = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in (agent_block, scores_block):
            exec(compile(block, str(CUSTOM_AGENT_GUIDE), "exec"), namespace)
    ndcg = {name: result["NDCG@10"] for name, result in namespace["scores"].items()}
    assert len(out.getvalue().splitlines()) == len(ndcg)
    # 16 groups learn more than one fixed hint does, and stay below the oracle.
    assert ndcg["best fixed hint"] == pytest.approx(0.444, abs=0.03)
    assert ndcg["best fixed hint"] < ndcg["agent"] < ndcg["oracle (upper bound)"]