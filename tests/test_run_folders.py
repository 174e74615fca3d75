"""Every `rec-gym train` run writes the same folder, and `rec-gym evaluate` scores it through one loader.

One tiny run of each kind (PPO, A2C and DQN on the one-hint env, MaskablePPO on the composition env,
the PPO team) is trained through the command, then reloaded and scored through the command.
"""

from __future__ import annotations

import csv
import json
import pickle
import shutil

import pytest
import yaml

from rec_gym.agents.evaluation import METRICS
from rec_gym.agents.training import RUN_FILES
from rec_gym.cli import main

ONE_HINT = "Re2LLM-Synthetic-v0"
PPO = {"n_envs": 2, "n_timesteps": 128, "policy": "MlpPolicy", "n_steps": 32, "batch_size": 32, "n_epochs": 1,
       "policy_kwargs": "dict(net_arch=[16])"}
RUNS = {  # name: (algo, env id, extra env kwargs, hyperparameters)
    "ppo": ("ppo", ONE_HINT, [], {**PPO, "gamma": 0.0, "normalize": "dict(norm_obs=True, norm_reward=False)"}),
    "a2c": ("a2c", ONE_HINT, [], {"n_envs": 2, "n_timesteps": 64, "policy": "MlpPolicy", "n_steps": 8, "gamma": 0.0}),
    "dqn": ("dqn", ONE_HINT, [], {"n_envs": 1, "n_timesteps": 64, "policy": "MlpPolicy", "learning_starts": 16,
                                  "buffer_size": 1000, "batch_size": 16, "gamma": 0.0}),
    "compose": ("maskable_ppo", "Re2LLMCompose-Synthetic-v0", ["max_hints=2"], {**PPO, "gamma": 1.0}),
    "team": ("ppo", "hint_team_v0", ["n_agents=2", "reward_mode=difference"], {**PPO, "gamma": 0.0}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{name: run folder}`` of one tiny run of each kind, trained by `rec-gym train` into one cache."""
    root = tmp_path_factory.mktemp("run-folders")
    folders = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REC_GYM_CACHE", str(root / "cache"))
        for name, (algo, env_id, extra, hyperparams) in RUNS.items():
            hp_file = root / f"{name}.yml"
            hp_file.write_text(yaml.safe_dump({env_id: hyperparams}), encoding="utf-8")
            folders[name] = root / name
            assert main(["train", "--algo", algo, "--env", env_id, "--env-kwargs", "n_train=16", *extra,
                         "--hyperparams", str(hp_file), "--out", str(folders[name]), "--val-every", "64",
                         "--no-progress"]) == 0
    return folders, root / "cache"


def test_every_kind_of_run_writes_the_same_files(runs):
    folders, _ = runs
    for name, folder in folders.items():
        assert sorted(p.name for p in folder.iterdir()) == sorted(RUN_FILES), name
        assert list((folder / "tb").rglob("events.out.tfevents.*")), name
        curve = list(csv.DictReader(open(folder / "val_curve.csv")))
        assert int(curve[0]["timesteps"]) == 0 and int(curve[-1]["timesteps"]) >= RUNS[name][3]["n_timesteps"], name
        config = json.loads((folder / "config.json").read_text())
        assert set(config["val"]) == {"val_ndcg10", "val_no_hint_ndcg10", "val_mean_hints", "llm_calls"}, name
        assert config["val"]["val_ndcg10"] == pytest.approx(float(curve[-1]["val_ndcg10"])), name
        normalization = json.loads((folder / "normalization.json").read_text())
        assert normalization["normalized"] == (name == "ppo"), name
    keys = {name: sorted(json.loads((folder / "config.json").read_text())) for name, folder in folders.items()}
    assert len({tuple(k) for k in keys.values()}) == 1, keys


@pytest.mark.parametrize("name", list(RUNS))
def test_rec_gym_evaluate_scores_every_kind_without_unpickling(runs, name, monkeypatch, capsys):
    import cloudpickle

    folders, cache = runs
    monkeypatch.setenv("REC_GYM_CACHE", str(cache))

    def refuse(*args, **kwargs):
        raise AssertionError("a run folder must load without unpickling")

    monkeypatch.setattr(cloudpickle, "loads", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(folders[name]), "--split", "val", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    algo = RUNS[name][0].upper()
    assert list(report) == [f"{algo} (seed 0)"] and set(report[f"{algo} (seed 0)"]) == set(METRICS)
    # The reloaded policy is the trained one: it scores on val what training recorded for its final policy.
    config = json.loads((folders[name] / "config.json").read_text())
    assert report[f"{algo} (seed 0)"]["NDCG@10"] == pytest.approx(config["val"]["val_ndcg10"])


def test_a_team_run_is_scored_on_test_beside_the_one_hint_baselines(runs, monkeypatch, capsys):
    folders, cache = runs
    monkeypatch.setenv("REC_GYM_CACHE", str(cache))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(folders["team"]), "--baselines", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"PPO (seed 0)", "no hint", "random hint", "best fixed hint", "oracle"}
    # The oracle's one best hint per session bounds no hint from above on the same sessions.
    assert report["oracle"]["NDCG@10"] >= report["no hint"]["NDCG@10"]
    assert report["no hint"]["mean_reward"] == 0.0


@pytest.mark.parametrize("change, named", [
    ({"algo": "dqn"}, "is not one of ('maskable_ppo', 'ppo')"),
    ({"env_kwargs": {"max_hints": 2, "llm": "openai:gpt-4o"}}, "asks for llm"),
    ({"hyperparams": {"policy": "evil.Policy"}}, "policy='evil.Policy' is not allowed in a received run"),
])
def test_a_received_composition_run_goes_through_the_same_checks(runs, tmp_path, monkeypatch, capsys, change, named):
    folders, cache = runs
    monkeypatch.setenv("REC_GYM_CACHE", str(cache))
    received = tmp_path / "received"
    shutil.copytree(folders["compose"], received)
    config = json.loads((received / "config.json").read_text())
    for key, value in change.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (received / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", "--model", str(received)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rec-gym evaluate: error: ") and named in err
