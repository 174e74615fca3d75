"""`rec-gym evaluate` on a run folder from someone else: its config.json cannot import, connect, read secrets or write.

Each test copies one trained run, edits its config.json the way a hostile sender would, evaluates it
through the command, and checks the effect did not happen: a sentinel module that creates a file when
imported, a real HTTP server on 127.0.0.1 that counts requests, a fake secret in an environment
variable, and a listing of every file under the test's folder.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest

from llm_fixtures import ChatServer
from rec_gym.agents.training import RECEIVED_POLICIES, load_run, train
from rec_gym.cli import main

ENV_ID = "Re2LLM-Synthetic-v0"
SECRET = "sk-fake-secret-7f3a9c"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "received-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REC_GYM_CACHE", str(cache))
        out = tmp_path_factory.mktemp("received-source") / "run"
        train("a2c", ENV_ID, {"n_train": 300}, seed=0, timesteps=128, out_dir=out, tensorboard=False)
    return out, cache


@pytest.fixture
def received(trained_run, tmp_path, monkeypatch):
    """A copy of the trained run under ``tmp_path/received`` beside a module that leaves a sentinel when imported."""
    source, cache = trained_run
    run = tmp_path / "received"
    shutil.copytree(source, run)
    sentinel = tmp_path / "imported"
    (run / "evil.py").write_text(f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('imported')\n"
                                 "class Policy: pass\n")
    monkeypatch.syspath_prepend(str(run))
    monkeypatch.chdir(run)
    monkeypatch.setenv("REC_GYM_CACHE", str(cache))
    monkeypatch.setenv("REC_GYM_FAKE_SECRET", SECRET)
    return run, sentinel


def _edit(run: Path, **changes) -> dict:
    config = json.loads((run / "config.json").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (run / "config.json").write_text(json.dumps(config))
    return config


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("field, value, named", [
    ("env_id", "evil:Re2LLM-Synthetic-v0", "not an env id of rec_gym"),
    ("algo", "evil", "algo='evil' is not one of"),
])
def test_an_env_id_or_algo_that_would_import_a_module_is_refused(received, capsys, field, value, named):
    run, sentinel = received
    _edit(run, **{field: value})
    assert main(["evaluate", "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rec-gym evaluate: error: ") and named in err and err.count("\n") == 1
    assert not sentinel.exists()


def test_a_policy_outside_the_allow_list_is_refused_before_any_import(received, capsys):
    run, sentinel = received
    _edit(run, hyperparams={"policy": "evil.Policy"})
    assert main(["evaluate", "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert "policy='evil.Policy' is not allowed in a received run" in err and "MlpPolicy" in err
    assert not sentinel.exists()
    with pytest.raises(ValueError, match="not allowed in a received run"):
        load_run(run)
    assert not sentinel.exists()
    assert "MlpPolicy" in RECEIVED_POLICIES


def test_llm_server_secret_and_paths_named_by_the_config_are_never_used(received, capsys, tmp_path):
    run, sentinel = received
    outside = tmp_path / "outside"
    before = _files(tmp_path)
    with ChatServer() as server:
        _edit(run, env_kwargs={"llm": "openai:test-model", "llm_kwargs": {"base_url": server.base_url,
                                                                           "api_key_env": "REC_GYM_FAKE_SECRET"},
                               "feedback_table": str(outside / "table.npz"), "data_dir": str(outside / "data")})
        assert main(["evaluate", "--model", str(run)]) == 2
        out, err = capsys.readouterr()
        for key in ("data_dir", "feedback_table", "llm", "llm_kwargs"):
            assert key in err
        assert "--env-kwargs" in err and "never chooses the LLM" in err
        assert len(server.auth) == 0 and not server.bodies
    assert SECRET not in out + err
    assert _files(tmp_path) == before and not outside.exists() and not sentinel.exists()


def test_the_command_line_supplies_what_the_config_may_not_and_evaluation_runs(received, capsys, tmp_path):
    run, sentinel = received
    cache = Path(os.environ["REC_GYM_CACHE"])
    with ChatServer() as server:
        _edit(run, env_kwargs={"llm": "openai:test-model", "llm_kwargs": {"base_url": server.base_url,
                                                                           "api_key_env": "REC_GYM_FAKE_SECRET"},
                               "feedback_table": str(tmp_path / "outside" / "table.npz")})
        before = _files(tmp_path)
        code = main(["evaluate", "--model", str(run), "--split", "val", "--json",
                     "--env-kwargs", "llm=simulated", "llm_kwargs=null", "feedback_table=null"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert len(server.auth) == 0
    report = json.loads(out)
    assert 0.0 <= report["A2C (seed 0)"]["NDCG@10"] <= 1.0
    assert SECRET not in out + err
    written = {path for path in _files(tmp_path) - before if cache not in path.parents}
    assert written == set() and not sentinel.exists()
    for path in _files(tmp_path) | _files(cache):
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("key, value", [("dataset", "/etc"), ("kb", "/etc/hostname"),
                                        ("encoder", "st:someone/some-model")])
def test_a_dataset_folder_kb_file_or_downloaded_encoder_must_come_from_the_command_line(received, capsys, key, value):
    run, _ = received
    _edit(run, env_kwargs={key: value})
    assert main(["evaluate", "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"asks for {key};" in err and f"--env-kwargs {key}=" in err


def test_a_config_that_is_not_a_run_config_is_named(received, capsys):
    run, _ = received
    (run / "config.json").write_text("[1, 2]")
    assert main(["evaluate", "--model", str(run)]) == 2
    assert "config.json: expected a JSON object" in capsys.readouterr().err
    (run / "config.json").write_text("{not json")
    assert main(["evaluate", "--model", str(run)]) == 2
    assert "config.json: not a JSON file" in capsys.readouterr().err


@pytest.mark.parametrize("hyperparams, said", [
    ({"policy_kwargs": "dict(net_arch=[100000, 100000])"}, "makes a network of 10,0"),
    ({"policy_kwargs": "dict(net_arch=dict(pi=[64], vf=[1073741824]))"}, "over the limit of 50,000,000"),
    ({"policy_kwargs": "dict(net_arch=[64, True])"}, "must be a list of positive ints"),
    ({"policy": "rec_gym.agents.features.TextChoicePolicy", "policy_kwargs": {"text_dim": 256, "hidden": 10 ** 6}},
     "hidden=1000000 makes a network of over 50,000,000"),
    ({"policy": "rec_gym.agents.features.TextChoicePolicy", "policy_kwargs": {"text_dim": -3}},
     "text_dim=-3 must be a positive int"),
    ({"n_steps": 10 ** 9}, "stored steps"),
    ({"n_steps": 2.5}, "n_steps=2.5 must be a positive int"),
])
def test_sizes_a_received_config_asks_for_are_refused_before_any_model_is_built(received, capsys, monkeypatch,
                                                                                hyperparams, said):
    import rec_gym.agents.training as training

    def built(*args, **kwargs):
        raise AssertionError("a model was built from a config over the limits")

    monkeypatch.setattr(training, "load_model", built)
    run, _ = received
    _edit(run, hyperparams=hyperparams)
    assert main(["evaluate", "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1, err


def test_a_zip_bomb_in_model_zip_or_an_oversized_config_is_refused_unread(received, capsys):
    import zipfile

    from rec_gym.agents.training import MAX_CONFIG_BYTES, MAX_ZIP_DATA_BYTES

    run, _ = received
    model = run / "model.zip"
    with zipfile.ZipFile(model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(model, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():  # 'data' a JSON object padded to twice its limit: ~70 kB compressed
            archive.writestr(name, data[:-1] + b" " * (2 * MAX_ZIP_DATA_BYTES) + b"}" if name == "data" else data)
    assert model.stat().st_size < 1 << 20
    assert main(["evaluate", "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert "member 'data' declares" in err and f"{MAX_ZIP_DATA_BYTES:,}" in err and err.count("\n") == 1

    config = run / "config.json"
    config.write_text(config.read_text()[:-1] + " " * MAX_CONFIG_BYTES + "}")
    assert main(["evaluate", "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert "config.json is" in err and f"limit of {MAX_CONFIG_BYTES:,}" in err and err.count("\n") == 1


def test_train_prints_the_evaluate_line_with_the_arguments_the_run_cannot_supply(trained_run, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(trained_run[1]))
    out = tmp_path / "my run"
    assert main(["train", "--algo", "a2c", "--timesteps", "128", "--val-every", "0", "--no-progress", "--out", str(out),
                 "--env-kwargs", "n_train=300", "llm=simulated", "llm_kwargs={}"]) == 0
    printed = capsys.readouterr().out
    line = printed[printed.index("rec-gym evaluate"):].splitlines()[0]
    assert line == f"rec-gym evaluate --model '{out}' --env-kwargs llm=simulated 'llm_kwargs={{}}'"
    assert main(shlex.split(line)[1:] + ["--split", "val"]) == 0
    assert main(["evaluate", "--model", str(out)]) == 2
    assert "--env-kwargs llm=simulated llm_kwargs={}" in capsys.readouterr().err
