"""SB3 training from zoo-format hyperparameters, saved runs, the train/evaluate CLI pieces, and ecosystem fit."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.agents import evaluate
from rec_gym.cli import agents as cli
from rec_gym.agents.training import HYPERPARAMS_DIR, Hyperparams, evaluate_run, load_hyperparams, load_run, train

ENV_ID = "Re2LLM-Synthetic-v0"


@pytest.fixture(autouse=True)
def _use_agents_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path_factory.getbasetemp() / "agents-cache"))


def test_zoo_hyperparameters_parse_into_algorithm_arguments():
    hp = Hyperparams.parse({"n_envs": 4, "n_timesteps": "1e4", "policy": "MlpPolicy", "learning_rate": "lin_0.001",
                            "policy_kwargs": "dict(net_arch=[32, 32], activation_fn=nn.ReLU)",
                            "normalize": "dict(norm_obs=True, norm_reward=False)", "gamma": 0.0})
    assert (hp.n_envs, hp.n_timesteps, hp.policy) == (4, 10_000, "MlpPolicy")
    assert hp.algo_kwargs["policy_kwargs"]["net_arch"] == [32, 32]
    assert hp.algo_kwargs["learning_rate"](0.5) == pytest.approx(0.0005)
    assert hp.normalize == {"norm_obs": True, "norm_reward": False} and hp.algo_kwargs["gamma"] == 0.0
    with pytest.raises(ValueError, match="policy_kwargs"):
        Hyperparams.parse({"policy_kwargs": "dict(net_arch=[32,"})


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_shipped_hyperparameters_cover_every_env_id(algo):
    from stable_baselines3.common.policies import BasePolicy

    for env_id in rec_gym.ENV_IDS:
        hp = Hyperparams.parse(load_hyperparams(algo, env_id))
        assert hp.n_timesteps > 0 and (hp.policy == "MlpPolicy" or issubclass(hp.policy, BasePolicy))
    with pytest.raises(KeyError, match="no entry for 'CartPole-v1'"):
        load_hyperparams(algo, "CartPole-v1")


def test_train_saves_a_model_and_its_config_that_evaluate_reloads(tmp_path):
    result = train("a2c", ENV_ID, {"n_train": 300}, seed=3, timesteps=512, out_dir=tmp_path / "run", val_every=256)
    for name in ("model.zip", "config.json", "normalization.json", "val_curve.csv"):
        assert (tmp_path / "run" / name).exists(), name
    assert any((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["algo"], config["env_id"], config["env_kwargs"], config["seed"]) == ("a2c", ENV_ID, {"n_train": 300}, 3)
    assert config["hyperparams"]["gamma"] == 0.0 and config["timesteps"] == 512
    assert result.curve.steps[0] == 0 and result.curve.steps[-1] >= 512
    direct = evaluate(result.policy, ENV_ID, "test", {"n_train": 300})
    reloaded, _ = evaluate_run(tmp_path / "run" / "model.zip", "test")
    assert np.array_equal(direct.actions, reloaded.actions) and direct.metrics == reloaded.metrics


def test_same_seed_gives_the_same_policy(tmp_path):
    runs = [train("ppo", ENV_ID, {"n_train": 300}, seed=1, timesteps=256, tensorboard=False,
                  hyperparams={**load_hyperparams("ppo", ENV_ID), "n_steps": 32, "n_envs": 4}) for _ in range(2)]
    results = [evaluate(r.policy, ENV_ID, "val", {"n_train": 300}) for r in runs]
    assert np.array_equal(results[0].actions, results[1].actions)


def test_keep_best_val_returns_and_saves_the_val_best_point_of_the_curve(tmp_path):
    # A learning rate this high makes PPO's val score jump between points, so the best is rarely the last.
    hyperparams = {**load_hyperparams("ppo", ENV_ID), "n_steps": 32, "n_envs": 4, "learning_rate": 0.05}
    result = train("ppo", ENV_ID, {"n_train": 300}, seed=0, timesteps=1024, out_dir=tmp_path / "run", val_every=128,
                   tensorboard=False, hyperparams=hyperparams, keep="best_val")
    best = int(np.argmax(result.curve.ndcg))  # the first of equal maxima
    assert result.config["keep"] == {"policy": "best_val", "timesteps": result.curve.steps[best]}
    assert result.config["val"]["val_ndcg10"] == pytest.approx(result.curve.ndcg[best])
    # The kept weights and observation statistics score what the curve measured at that point, before and after saving.
    assert evaluate(result.policy, ENV_ID, "val", {"n_train": 300})["NDCG@10"] == pytest.approx(result.curve.ndcg[best])
    reloaded, _ = evaluate_run(tmp_path / "run", "val")
    assert reloaded["NDCG@10"] == pytest.approx(result.curve.ndcg[best])
    with pytest.raises(ValueError, match="keep='last'"):
        train("ppo", ENV_ID, {"n_train": 300}, timesteps=64, hyperparams=hyperparams, keep="last")


def test_cli_train_then_evaluate(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.configure_train(parser)
    args = parser.parse_args(["--algo", "dqn", "--env", ENV_ID, "--env-kwargs", "n_train=300", "--timesteps", "300",
                              "--seed", "0", "--out", str(tmp_path / "dqn"), "--val-every", "0", "--no-progress"])
    assert cli.run_train(args) == 0
    assert json.loads((tmp_path / "dqn" / "config.json").read_text())["env_kwargs"] == {"n_train": 300}
    parser = argparse.ArgumentParser()
    cli.configure_evaluate(parser)
    capsys.readouterr()
    assert cli.run_evaluate(parser.parse_args(["--model", str(tmp_path / "dqn" / "model.zip")])) == 0
    out = capsys.readouterr().out
    assert "split=test" in out and "NDCG@10" in out and "DQN (seed 0)" in out


def test_train_with_the_progress_bar_writes_tensorboard_logs(tmp_path):
    result = train("a2c", ENV_ID, {"n_train": 300}, seed=0, timesteps=256, out_dir=tmp_path / "run", val_every=128,
                   progress_bar=True)
    assert result.model.num_timesteps >= 256
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    log = EventAccumulator(str(events[0])).Reload()
    scalars = log.Scalars("val/NDCG@10")  # every val point, at its step
    assert [e.step for e in scalars] == result.curve.steps
    assert [e.value for e in scalars] == pytest.approx(result.curve.ndcg, abs=1e-6)


def test_cli_evaluate_reports_the_model_beside_the_baselines(tmp_path, capsys):
    train("a2c", ENV_ID, {"n_train": 300}, seed=0, timesteps=256, out_dir=tmp_path / "a2c", tensorboard=False)
    parser = argparse.ArgumentParser()
    cli.configure_evaluate(parser)
    capsys.readouterr()
    assert cli.run_evaluate(parser.parse_args(["--model", str(tmp_path / "a2c"), "--split", "val", "--baselines", "--json"])) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"A2C (seed 0)", "no hint", "random hint", "best fixed hint", "oracle"}
    assert report["oracle"]["NDCG@10"] >= max(r["NDCG@10"] for r in report.values())
    assert report["no hint"]["mean_reward"] == 0.0


@pytest.mark.parametrize("algo, overrides", [("ppo", {"learning_rate": "lin_0.001", "policy": "MlpPolicy"}),
                                             ("a2c", {}), ("dqn", {"normalize": False})])
def test_a_saved_run_loads_without_unpickling_anything(tmp_path, monkeypatch, algo, overrides):
    import cloudpickle

    hyperparams = {**load_hyperparams(algo, ENV_ID), **overrides}
    result = train(algo, ENV_ID, {"n_train": 300}, seed=0, timesteps=256, out_dir=tmp_path / algo, tensorboard=False,
                   hyperparams=hyperparams)
    normalization = json.loads((tmp_path / algo / "normalization.json").read_text())
    assert normalization["normalized"] == bool(hyperparams.get("normalize"))
    assert not list((tmp_path / algo).glob("*.pkl"))

    def refuse(*args, **kwargs):
        raise AssertionError("a run folder must load without unpickling")

    monkeypatch.setattr(cloudpickle, "loads", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    policy, _ = load_run(tmp_path / algo)
    direct = evaluate(result.policy, ENV_ID, "val", {"n_train": 300})
    assert np.array_equal(evaluate(policy, ENV_ID, "val", {"n_train": 300}).actions, direct.actions)


def test_load_run_names_a_missing_or_mismatched_normalization_file(tmp_path):
    train("a2c", ENV_ID, {"n_train": 300}, seed=0, timesteps=128, out_dir=tmp_path / "run", tensorboard=False)
    stats = json.loads((tmp_path / "run" / "normalization.json").read_text())
    (tmp_path / "run" / "normalization.json").write_text(json.dumps({**stats, "mean": stats["mean"][:3]}))
    with pytest.raises(ValueError, match=r"normalization\.json.*observations have 15 dimensions"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "normalization.json").unlink()
    with pytest.raises(FileNotFoundError, match="normalization.json not found"):
        load_run(tmp_path / "run")


def test_zoo_expressions_are_parsed_not_evaluated(tmp_path):
    sentinel = tmp_path / "ran"
    hostile = ["dict(x=().__class__.__base__.__subclasses__())", f"__import__('pathlib').Path({str(sentinel)!r}).touch()",
               "nn.modules.module.torch.os.getcwd()", "dict(**{'a': 1})", "nn.functional.relu", "[" * 100_000]
    for text in hostile:
        with pytest.raises(ValueError, match="policy_kwargs=.*not a valid expression"):
            Hyperparams.parse({"policy_kwargs": text})
    assert not sentinel.exists()
    hp = Hyperparams.parse({"policy_kwargs": "dict(log_std_init=-2.5, net_arch=dict(pi=[64], vf=[32]), "
                                             "activation_fn=nn.Tanh, ortho_init=False, features=(1, None))"})
    assert hp.algo_kwargs["policy_kwargs"] == {"log_std_init": -2.5, "net_arch": {"pi": [64], "vf": [32]},
                                               "activation_fn": __import__("torch").nn.Tanh, "ortho_init": False,
                                               "features": (1, None)}
    with pytest.raises(ValueError, match="'os.system' is not a Stable-Baselines3 policy class"):
        Hyperparams.parse({"policy": "os.system"})


def test_load_run_refuses_a_received_config_that_would_run_code(tmp_path):
    train("a2c", ENV_ID, {"n_train": 300}, seed=0, timesteps=128, out_dir=tmp_path / "run", tensorboard=False)
    sentinel = tmp_path / "ran"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["hyperparams"]["policy_kwargs"] = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="policy_kwargs"):
        load_run(tmp_path / "run")
    assert not sentinel.exists()


def test_load_run_refuses_a_model_without_its_config(tmp_path):
    (tmp_path / "model.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        load_run(tmp_path / "model.zip")
    with pytest.raises(FileNotFoundError, match="nope.zip does not exist"):
        load_run(tmp_path / "nope.zip")


@pytest.mark.parametrize("env_id, start_method", [("rec_gym:Re2LLM-Synthetic-v0", None), (ENV_ID, "fork")])
def test_make_vec_env_with_subprocesses_steps_the_synthetic_env(env_id, start_method):
    # SB3's default start method (forkserver) starts fresh interpreters, which know the ids only
    # through the "rec_gym:" prefix that makes gym.make import rec_gym; fork inherits the registry.
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # make_vec_env asks for render_mode="rgb_array" and retries without it only on a TypeError.
    with pytest.raises(TypeError, match="render_mode='rgb_array' is not supported"):
        gym.make(ENV_ID, render_mode="rgb_array", n_train=300)
    venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs={"n_train": 300}, vec_env_cls=SubprocVecEnv,
                        vec_env_kwargs={"start_method": start_method})
    obs = venv.reset()
    assert obs.shape == (2, 15)
    obs, rewards, dones, infos = venv.step(np.array([0, 5]))
    assert rewards[0] == 0.0 and -1.0 <= rewards[1] <= 1.0 and dones.all()
    assert infos[1]["terminal_observation"].shape == (15,)
    venv.close()


@pytest.mark.parametrize("env_id, dataset, folder", [("Re2LLM-Steam-v0", "steam", "steam-sessions"),
                                                      ("Re2LLM-ML1M-v0", "ml-latest-small", "ml-latest-small")])
def test_make_vec_env_with_subprocesses_steps_the_real_data_ids(env_id, dataset, folder, shared_data):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    kwargs = {"dataset": dataset, "data_dir": str(shared_data / folder), "llm": "simulated", "encoder": "hashing",
              "split": "val"}
    local = gym.make(env_id, **kwargs)
    venv = make_vec_env(f"rec_gym:{env_id}", n_envs=2, seed=0, env_kwargs=kwargs, vec_env_cls=SubprocVecEnv)
    try:
        assert venv.reset().shape == (2, *local.observation_space.shape)
        seen = []
        for actions in ([3, 7], [1, 12], [5, 9], [2, 16]):
            _, rewards, dones, infos = venv.step(np.array(actions))
            assert dones.all()
            seen.extend(rewards)
            for action, reward, info in zip(actions, rewards, infos):
                # The same session and hint stepped in this process give the same reward.
                local.reset(options={"session_index": info["session_index"]})
                assert local.step(int(action))[1] == pytest.approx(reward, abs=1e-6)
        assert np.any(np.array(seen) != 0)  # hints do move the ranking
    finally:
        venv.close()
        local.close()


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="rl_zoo3 is not installed (pip install rl_zoo3)")
def test_rl_zoo3_trains_from_the_shipped_hyperparameter_file(tmp_path):
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "a2c", "--env", ENV_ID, "--gym-packages", "rec_gym",
               "--conf-file", str(HYPERPARAMS_DIR / "a2c.yml"), "-n", "256",
               "--env-kwargs", "n_train:300", "-f", str(tmp_path), "--seed", "0", "--eval-freq", "-1"]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert list(tmp_path.rglob(f"{ENV_ID}.zip")), "rl_zoo3 saved no model"
