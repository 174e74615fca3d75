"""Training and scoring on several hints per prompt: MaskablePPO on the composition env, a shared PPO team."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.agents.hint_sets import (compose_ranks, known_entries, make_team_env, set_ranks, team_ranks,
                                      train_compose, train_team)
from rec_gym.feedback.table import UNKNOWN, FeedbackTable

KW = {"n_train": 16}
HP = {"n_envs": 2, "n_timesteps": 256, "policy": "MlpPolicy", "n_steps": 64, "batch_size": 64, "n_epochs": 1,
      "gamma": 1.0, "policy_kwargs": "dict(net_arch=[16])"}


def test_maskable_ppo_plays_only_allowed_sets_and_its_ranks_are_the_table_entries(tmp_path):
    table = tmp_path / "train.npz"
    model = train_compose("Re2LLMCompose-Synthetic-v0", "maskable_ppo", {**KW, "max_hints": 3,
                                                                        "feedback_table": str(table)},
                          seed=0, hyperparams=HP)
    assert type(model).__name__ == "MaskablePPO"
    env = gym.make("Re2LLMCompose-Synthetic-v0", split="test", max_hints=3, **KW)
    sessions = np.arange(0, 40, 3)
    ranks, sizes = compose_ranks(model, env, sessions)
    assert ranks.shape == sizes.shape == (len(sessions),) and (sizes <= 3).all()
    task = env.unwrapped.task
    for j, i in enumerate(sessions):  # replaying the same deterministic episode lands on the same table entry
        env.reset(options={"session_index": int(i)})
        info, done = {}, False
        while not done:
            action, _ = model.predict(env.unwrapped._observation(), deterministic=True,
                                      action_masks=env.unwrapped.action_masks())
            _, _, done, _, info = env.step(int(action))
        col = task.table.column([task.kb[a - 1] for a in info["hints"][:info["n_hints"]]])
        assert ranks[j] == task.rank(int(i), col) and sizes[j] == info["n_hints"]
    env.close()
    # The run's table holds exactly what it asked for: every known entry is a (session, set) it played.
    stored = FeedbackTable.load(table)
    assert known_entries(table) == stored.n_known > 0
    assert all(len(c) <= 3 for j, c in enumerate(stored.columns) if (stored.ranks[:, j] != UNKNOWN).any())
    assert known_entries(tmp_path / "absent.npz") == 0


def test_plain_ppo_trains_on_the_composition_env_too():
    model = train_compose("Re2LLMCompose-Synthetic-v0", "ppo", {**KW, "max_hints": 2}, seed=1, hyperparams=HP)
    env = gym.make("Re2LLMCompose-Synthetic-v0", split="val", max_hints=2, **KW)
    ranks, sizes = compose_ranks(model, env, [0, 1, 2])
    assert (ranks >= 0).all() and (sizes <= 2).all()
    with pytest.raises(ValueError, match="not one of"):
        train_compose("Re2LLMCompose-Synthetic-v0", "dqn", KW, hyperparams=HP)


def test_the_shared_team_policy_sees_who_it_is_and_its_ranks_are_the_envs():
    model = train_team({**KW, "n_agents": 3, "reward_mode": "difference"}, seed=0, hyperparams=HP)
    env = make_team_env("test", {**KW, "n_agents": 3})
    base = make_team_env("test", {**KW, "n_agents": 3}, indicator=False)
    obs, _ = env.reset(options={"session_index": 5})
    plain, _ = base.reset(options={"session_index": 5})
    agents = list(obs)
    # The agent indicator: the plain observation plus a one-hot of the agent, so a shared policy can differ.
    for k, agent in enumerate(agents):
        assert obs[agent].shape[0] == plain[agent].shape[0] + 3
        np.testing.assert_array_equal(obs[agent][:plain[agent].shape[0]], plain[agent])
        assert obs[agent][plain[agent].shape[0]:].tolist() == [float(k == j) for j in range(3)]
    assert model.observation_space.shape == obs[agents[0]].shape
    sessions = [0, 5, 9]
    ranks, sizes = team_ranks(model, env, sessions)
    for j, i in enumerate(sessions):
        observations, _ = env.reset(options={"session_index": i})
        actions, _ = model.predict(np.stack([observations[a] for a in agents]), deterministic=True)
        _, _, _, _, infos = env.step({a: int(x) for a, x in zip(agents, actions)})
        assert ranks[j] == infos[agents[0]]["rank"] and sizes[j] == len(set(actions.tolist()) - {0})
    env.close()
    base.close()


def test_set_ranks_covers_every_set_and_agrees_with_the_one_hint_env():
    env = gym.make("Re2LLM-Synthetic-v0", split="test", **KW)
    task = env.unwrapped.task
    sessions = np.array([1, 4, 7])
    ranks, columns = set_ranks(task, 2, sessions)
    assert ranks.shape == (3, 1 + 20 + 190) and columns[0] == () and len(set(columns)) == len(columns)
    task.ensure(sessions, np.arange(task.n_actions))
    np.testing.assert_array_equal(ranks[:, :21], task.rank(sessions[:, None], np.arange(21)[None, :]))
    assert all(len(c) == 2 for c in columns[21:])
    env.close()


@pytest.mark.parametrize("algo,env_id,extra", [("maskable_ppo", "Re2LLMCompose-Synthetic-v0", ["max_hints=2"]),
                                               ("ppo", "hint_team_v0", ["n_agents=2", "reward_mode=difference"])])
def test_rec_gym_train_runs_the_composition_and_team_envs_and_counts_llm_calls(tmp_path, monkeypatch, capsys,
                                                                               algo, env_id, extra):
    import json

    import yaml

    from rec_gym.cli import main

    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path / "cache"))
    hp_file = tmp_path / "hp.yml"
    hp_file.write_text(yaml.safe_dump({env_id: HP}), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--algo", algo, "--env", env_id, "--env-kwargs", "n_train=16", *extra,
                 "--hyperparams", str(hp_file), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert (out / "model.zip").exists() and config["algo"] == algo and config["env_id"] == env_id
    calls = config["val"]["llm_calls"]
    # Nothing was in the fresh cache: the run needed exactly the entries its train and val tables hold now.
    tables = list((tmp_path / "cache").rglob("*.npz"))
    assert calls == sum(FeedbackTable.load(t).n_known for t in tables if "feedback" in str(t)) > 0
    assert f"distinct LLM calls this run needed: {calls:,}" in printed
    assert 0.0 <= config["val"]["val_ndcg10"] <= 1.0 and config["val"]["val_mean_hints"] <= 2


def test_rec_gym_train_refuses_mismatched_algorithms(capsys):
    from rec_gym.cli import main

    assert main(["train", "--algo", "maskable_ppo", "--env", "Re2LLM-Synthetic-v0"]) == 2
    assert "needs a Re2LLMCompose-* id" in capsys.readouterr().err
    assert main(["train", "--algo", "dqn", "--env", "hint_team_v0"]) == 2
    assert "hint_team_v0 trains with --algo ppo" in capsys.readouterr().err


def test_shipped_hyperparameters_cover_every_composition_id_and_the_team():
    from rec_gym.agents.training import Hyperparams, load_hyperparams
    from rec_gym.envs import COMPOSE_ENV_IDS

    for env_id in COMPOSE_ENV_IDS:
        for algo in ("maskable_ppo", "ppo"):
            hp = Hyperparams.parse(load_hyperparams(algo, env_id))
            assert hp.n_timesteps > 0 and hp.normalize is None and hp.algo_kwargs["gamma"] == 1.0
    team = Hyperparams.parse(load_hyperparams("ppo", "hint_team_v0"))
    assert team.n_timesteps > 0 and team.algo_kwargs["gamma"] == 0.0
