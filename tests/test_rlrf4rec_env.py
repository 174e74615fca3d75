"""The RLRF4Rec preference-selection environment: spaces, rewards, seeding, checkers and SB3."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.envs import RLRF4REC_ENV_IDS
from rec_gym.metrics import ndcg_at_k
from rec_gym.recsys.preferences import embed_texts, parse_preference

from conftest import write_session_folder

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi"]
N_TEXTS = 4


@pytest.fixture
def folder(tmp_path):
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": [GENRES[i % 4]],
              "creator": f"Director {i % 3}"} for i in range(60)]
    return str(write_session_folder(tmp_path / "tiny", items))


def _make(folder, **kwargs):
    return gym.make("RLRF4Rec-Synthetic-v0", dataset=folder, n_texts=N_TEXTS, recsys_training={"epochs": 2}, **kwargs)


def test_the_three_ids_are_registered_with_their_defaults():
    assert set(RLRF4REC_ENV_IDS) == {"RLRF4Rec-ML1M-v0", "RLRF4Rec-Steam-v0", "RLRF4Rec-Synthetic-v0"}
    assert gym.spec("RLRF4Rec-Synthetic-v0").kwargs["writer"] == "simulated"
    assert gym.spec("RLRF4Rec-Steam-v0").kwargs["dataset"] == "steam"


def test_spaces_and_the_observation_are_the_session_profile_then_the_texts_embeddings(folder):
    env = _make(folder)
    task = env.unwrapped.task
    assert env.action_space == gym.spaces.Discrete(N_TEXTS + 1)
    assert env.observation_space.shape == (15 + N_TEXTS * 256,)
    obs, info = env.reset(seed=0)
    i = info["session_index"]
    np.testing.assert_allclose(obs[15:].reshape(N_TEXTS, 256), embed_texts(task.replies[i], "hashing"), atol=1e-6)
    assert env.observation_space.contains(obs)


def test_check_env_passes(folder):
    check_env(_make(folder).unwrapped, skip_render_check=True)


def test_reward_is_the_texts_score_minus_the_no_text_score(folder):
    env = _make(folder)
    task = env.unwrapped.task
    for seed in range(6):
        env.reset(seed=seed)
        action = 1 + seed % N_TEXTS
        _, reward, terminated, truncated, info = env.step(action)
        i = info["session_index"]
        assert terminated and not truncated
        assert task.text(i, action) == task.replies[i][action - 1] and info["rank"] == task.ranks[i, action]
        assert info["well_formed"] == (parse_preference(task.text(i, action)) is not None)
        assert reward == pytest.approx(ndcg_at_k(info["rank"], 10) - ndcg_at_k(info["baseline_rank"], 10))
        assert info["best_ndcg"] >= info["ndcg"]
    _, reset_info = env.reset(seed=0)
    _, reward, *_, info = env.step(0)
    assert reward == 0.0 and task.text(info["session_index"], 0) == "" and info["rank"] == info["baseline_rank"]
    assert {k: type(v) for k, v in reset_info.items()} == {k: type(v) for k, v in info.items()}
    assert (reset_info["rank"], reset_info["baseline_rank"], reset_info["well_formed"]) == (-1, -1, False)
    raw = _make(folder, reward="score")
    raw.reset(seed=0)
    _, reward, *_, info = raw.step(1)
    assert reward == pytest.approx(info["ndcg"])


def test_seeding_reproduces_the_sessions_and_out_of_range_actions_are_refused(folder):
    a, b = _make(folder), _make(folder)
    seq_a = [a.reset(seed=7)[1]["session_index"]] + [a.reset()[1]["session_index"] for _ in range(5)]
    seq_b = [b.reset(seed=7)[1]["session_index"]] + [b.reset()[1]["session_index"] for _ in range(5)]
    assert seq_a == seq_b and len(set(seq_a)) > 1
    with pytest.raises(ValueError, match="out of range"):
        a.step(N_TEXTS + 1)


def test_splits_see_their_own_sessions_and_texts(folder):
    train, test = _make(folder), _make(folder, split="test")
    assert train.unwrapped.task.n_sessions == 30 and test.unwrapped.task.n_sessions == 5
    assert test.unwrapped.task.recommender.weights_hash() == train.unwrapped.task.recommender.weights_hash()


def test_sb3_ppo_trains_on_it(folder):
    from stable_baselines3 import PPO

    env = _make(folder)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu").learn(256)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert 0 <= int(action) <= N_TEXTS


def test_rec_gym_train_and_evaluate_run_on_the_rlrf4rec_id_with_the_baselines(folder, tmp_path, capsys):
    from rec_gym.agents import BestFixedHint, NoHint, Oracle, evaluate
    from rec_gym.cli import main

    kwargs = [f"dataset={folder}", f"n_texts={N_TEXTS}", "recsys_training={epochs: 2}"]
    run, hyperparams = tmp_path / "run", tmp_path / "ppo.yml"
    hyperparams.write_text("RLRF4Rec-Synthetic-v0:\n  n_envs: 1\n  n_steps: 64\n  batch_size: 64\n  n_epochs: 2\n"
                           "  gamma: 0.0\n  normalize: \"dict(norm_obs=True, norm_reward=False)\"\n")
    assert main(["train", "--algo", "ppo", "--env", "RLRF4Rec-Synthetic-v0", "--timesteps", "128", "--val-every", "0",
                 "--out", str(run), "--no-progress", "--hyperparams", str(hyperparams), "--env-kwargs", *kwargs]) == 0
    assert (run / "model.zip").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run), "--split", "test", "--env-kwargs", *kwargs]) == 0
    assert "NDCG@10" in capsys.readouterr().out
    env_kwargs = {"dataset": folder, "n_texts": N_TEXTS, "recsys_training": {"epochs": 2}}
    oracle = evaluate(Oracle(), "RLRF4Rec-Synthetic-v0", split="test", env_kwargs=env_kwargs)
    none = evaluate(NoHint(), "RLRF4Rec-Synthetic-v0", split="test", env_kwargs=env_kwargs)
    fixed = BestFixedHint.fit("RLRF4Rec-Synthetic-v0", env_kwargs=env_kwargs)
    best_fixed = evaluate(fixed, "RLRF4Rec-Synthetic-v0", split="test", env_kwargs=env_kwargs)
    assert none["mean_reward"] == 0.0
    assert oracle["NDCG@10"] >= max(none["NDCG@10"], best_fixed["NDCG@10"])
    task = gym.make("RLRF4Rec-Synthetic-v0", split="test", **env_kwargs).unwrapped.task
    assert oracle["NDCG@10"] == pytest.approx(task.ndcg.max(axis=1).mean())


def test_the_env_trains_its_recommender_on_the_histories_beyond_the_20_it_keeps(tmp_path):
    import json

    folder = tmp_path / "long"
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i % 40})", "year": 1960 + i % 40, "genres": [GENRES[i % 4]]}
             for i in range(100)]
    write_session_folder(folder, items, n_sessions=0)
    rng = np.random.default_rng(2)
    with open(folder / "sessions.jsonl", "w") as fh:
        for s in range(40):
            chosen = rng.choice(100, size=31, replace=False).tolist()  # 30 history items, the envs keep 20
            split = "train" if s < 30 else ("val" if s < 35 else "test")
            fh.write(json.dumps({"session_id": f"s{s}", "history": chosen[:-1], "target": chosen[-1], "split": split}) + "\n")
    longest = {}
    for train_history in (1000, 20):
        env = gym.make("RLRF4Rec-Synthetic-v0", dataset=str(folder), n_texts=2,
                       recsys_training={"epochs": 1, "train_history": train_history})
        assert env.unwrapped.task.dataset.history.shape[1] == 20
        longest[train_history] = env.unwrapped.task.recommender.info["training"]["longest_sequence"]
    assert longest == {1000: 31, 20: 21}


@pytest.mark.parametrize("training, message", [({"epoch": 2}, r"unknown key\(s\) \['epoch'\]"),
                                               ({"epochs": 0}, "epochs must be >= 1"),
                                               ({"train_history": 0}, "train_history must be >= 1")])
def test_bad_recsys_training_is_refused_before_any_work(folder, training, message):
    with pytest.raises(ValueError, match=message):
        gym.make("RLRF4Rec-Synthetic-v0", dataset=folder, n_texts=N_TEXTS, recsys_training=training)


def test_the_shipped_ppo_hyperparameters_train_a_text_choice_policy_that_evaluate_reloads(folder, tmp_path, capsys):
    import json

    from rec_gym.agents.features import TextChoicePolicy
    from rec_gym.agents.training import load_run
    from rec_gym.cli import main

    kwargs = [f"dataset={folder}", f"n_texts={N_TEXTS}", "recsys_training={epochs: 2}"]
    run = tmp_path / "run"
    assert main(["train", "--algo", "ppo", "--env", "RLRF4Rec-Synthetic-v0", "--timesteps", "512", "--val-every", "0",
                 "--out", str(run), "--no-progress", "--env-kwargs", *kwargs]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["hyperparams"]["policy"] == "rec_gym.agents.features.TextChoicePolicy"
    assert config["hyperparams"]["policy_kwargs"] == {"text_dim": 256}  # filled in from the env
    policy, _ = load_run(run, {"dataset": folder, "n_texts": N_TEXTS, "recsys_training": {"epochs": 2}})
    assert isinstance(policy.policy, TextChoicePolicy) and policy.policy.mlp_extractor.n_texts == N_TEXTS
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run), "--split", "test", "--env-kwargs", *kwargs]) == 0
    assert "NDCG@10" in capsys.readouterr().out


def test_text_choice_policy_on_a_hint_env_is_refused_with_the_fix(tmp_path):
    from rec_gym.agents.training import train

    with pytest.raises(ValueError, match="TextChoicePolicy chooses among preference texts, and Re2LLM-Synthetic-v0 "
                                         "offers none"):
        train("ppo", "Re2LLM-Synthetic-v0", hyperparams={"policy": "rec_gym.agents.features.TextChoicePolicy",
                                                         "n_timesteps": 64}, env_kwargs={"n_train": 20})
