"""The error policy of `rec-gym`: every failure caused by the user, a received file or the machine is one line.

Each probe runs a command the way a user or a received file would break it and checks the whole of
stderr: one line ``rec-gym <command>: error: ...``, no traceback, status 2 for the user's mistake
(an argument, a file given or received) and 1 for the machine's (memory, disk, a server, a
dataset or package this machine lacks). Most probes call :func:`rec_gym.cli.main` in this process;
a few run the installed command as a real process, end to end.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rec_gym.agents.training import train
from rec_gym.cli import main

ENV_ID = "Re2LLM-Synthetic-v0"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys, argv: list[str], status: int) -> str:
    """Run ``rec-gym argv`` in this process; check the status and the one line; return the message after the prefix."""
    assert main(argv) == status
    captured = capsys.readouterr()
    prefix = f"rec-gym {argv[0]}: error: "
    assert captured.err.startswith(prefix) and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err[len(prefix):-1]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("REC_GYM_DEBUG", raising=False)


@pytest.mark.parametrize("kwarg, named", [
    ("kb=[5]", "kb"),                        # wrong type: a hint that is not text
    ("n_train=many", "n_train"),             # wrong type: a count that is not a number
    ("colour=red", "has no argument(s) colour"),  # unknown key
    ("n_candidates=1000000", "n_candidates"),     # out of range
    ("kb=[unclosed", "not YAML"),            # not a value at all
])
def test_bad_env_kwargs_are_one_line_and_status_2(capsys, kwarg, named):
    assert named in _one_line(capsys, ["show", "--env-kwargs", kwarg], 2)


def test_an_envs_own_type_check_reads_as_its_message_without_gymnasiums_kwargs_dump(capsys):
    message = _one_line(capsys, ["show", "--env-kwargs", "n_candidates=abc"], 2)
    assert message.startswith("n_candidates='abc' is not an int")
    assert "environment creator" not in message and "TypeError" not in message


@pytest.mark.parametrize("text", ['{"hints": ["Prefer', "[" * 100_000 + "]" * 100_000],
                         ids=["truncated", "nested-too-deep"])
def test_a_damaged_knowledge_base_is_one_line_naming_it(capsys, tmp_path, text):
    kb = tmp_path / "kb.json"
    kb.write_text(text)
    assert str(kb) in _one_line(capsys, ["show", "--env-kwargs", f"kb={kb}"], 2)


def test_a_damaged_recommender_folder_is_one_line_naming_the_file(capsys, tmp_path):
    from rec_gym.recsys.model import SASRecRecommender
    from rec_gym.recsys.sasrec import SASRec, SASRecConfig

    folder = SASRecRecommender(SASRec(SASRecConfig(n_items=900, dim=8, n_blocks=1)), info={"dataset": "synthetic"}
                               ).save(tmp_path / "recommender")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    message = _one_line(capsys, ["show", "--env-kwargs", "reward_source=recsys", f"recommender={folder}"], 2)
    assert str(weights) in message


def test_a_missing_dataset_keeps_the_whole_advice_on_one_line(capsys):
    # Steam has no download, so nothing goes to the network; the advice is what the user must do.
    message = _one_line(capsys, ["show", "--env-kwargs", "dataset=steam"], 1)
    assert message.startswith("dataset 'steam' was not found.")
    assert "Put these files in" in message and "https://github.com/ljy0ustc/LLaRA" in message
    assert "REC_GYM_DATA" in message and "--debug shows" not in message


def test_an_unknown_env_id_names_the_closest_one(capsys):
    message = _one_line(capsys, ["train", "--algo", "ppo", "--env", "Re2LLM-Synth-v0"], 2)
    assert message.startswith("unknown env id 'Re2LLM-Synth-v0': did you mean 'Re2LLM-Synthetic-v0'?")
    assert "hint_team_v0" in message and "ppo.yml" not in message


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REC_GYM_CACHE", str(tmp_path_factory.mktemp("cli-errors-cache")))
        out = tmp_path_factory.mktemp("cli-errors-run") / "run"
        train("a2c", ENV_ID, {"n_train": 300}, seed=0, timesteps=64, out_dir=out, tensorboard=False)
    return out


def _damaged_run(source: Path, folder: Path, damage: str) -> Path:
    shutil.copytree(source, folder)
    if damage == "truncated model.zip":
        model = folder / "model.zip"
        model.write_bytes(model.read_bytes()[:200])
        return model
    config = json.loads((folder / "config.json").read_text())
    if damage == "wrong type":
        config["env_kwargs"]["n_train"] = "many"
    else:  # a layer of 2**40 units: 10**14 floats
        config["hyperparams"]["policy_kwargs"] = "dict(net_arch=[1099511627776])"
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("damage", ["truncated model.zip", "wrong type", "huge net_arch"])
def test_a_damaged_run_folder_is_one_line_and_status_2(capsys, tmp_path, trained_run, damage):
    damaged = _damaged_run(trained_run, tmp_path / "run", damage)
    message = _one_line(capsys, ["evaluate", "--model", str(tmp_path / "run")], 2)
    if damage == "truncated model.zip":
        assert str(damaged) in message


@pytest.mark.parametrize("raised, status, said", [
    (MemoryError(), 1, "out of memory"),
    (OSError(errno.ENOSPC, "No space left on device"), 1, "No space left on device"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), 1, "Connection refused"),
    (RecursionError("maximum recursion depth exceeded"), 2, "RecursionError: maximum recursion depth exceeded"),
    (OverflowError("Python int too large to convert to C long"), 2, "OverflowError: Python int too large"),
    (AttributeError("'list' object has no attribute 'get'"), 1, "please report it"),
])
def test_what_a_command_raises_decides_the_status(capsys, monkeypatch, tmp_path, raised, status, said):
    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr("rec_gym.agents.training.evaluate_run", fail)
    assert said in _one_line(capsys, ["evaluate", "--model", str(tmp_path)], status)


def test_debug_shows_the_exception_itself(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise MemoryError("a test")

    monkeypatch.setattr("rec_gym.agents.training.evaluate_run", fail)
    with pytest.raises(MemoryError, match="a test"):
        main(["--debug", "evaluate", "--model", str(tmp_path)])


def _command(*argv: str, prelude: str = "") -> subprocess.CompletedProcess:
    """``rec-gym argv`` in a fresh process (``prelude`` runs first); the console script when there is no prelude."""
    script = Path(sys.executable).with_name("rec-gym")
    if prelude or not script.exists():
        argv = (sys.executable, "-c", f"{prelude}\nimport sys\nfrom rec_gym.cli import main\nsys.exit(main())",
                *argv)
    else:
        argv = (str(script), *argv)
    env = {key: value for key, value in os.environ.items() if key != "REC_GYM_DEBUG"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)


def test_the_installed_command_prints_one_line_for_a_bad_kwarg():
    done = _command("show", "--env-kwargs", "kb=[5]")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("rec-gym show: error: ") and "Traceback" not in done.stderr


def test_a_missing_extra_is_one_line_with_the_install_command_of_this_clone(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    # As if the [dpo] extra were not installed: importing trl fails.
    done = _command("dpo-train", "--model", str(model), "--pairs", str(pairs), "--out", str(tmp_path / "out"),
                    prelude="import sys; sys.modules['trl'] = None")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("rec-gym dpo-train: error: rec-gym dpo-train needs the [dpo] extra")
    assert done.stderr.rstrip().endswith(f"pip install -e '{PROJECT_ROOT}[dpo]'")
    assert not (tmp_path / "out").exists()


def test_the_loop_without_the_dpo_extra_stops_before_any_work(tmp_path):
    done = _command("rlrf4rec-loop", "--out", str(tmp_path / "loop"), prelude="import sys; sys.modules['trl'] = None")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("rec-gym rlrf4rec-loop: error: rec-gym rlrf4rec-loop needs the [dpo] extra")
    assert not (tmp_path / "loop").exists()  # refused before the folder, the recommender or the fine-tuning


@pytest.mark.parametrize("argv, said", [
    (["train", "--algo", "foo"], "argument --algo: invalid choice: 'foo'"),
    (["train-recsys", "--dataset", "synthetic", "--out", "x", "--prompt", "nope"], "invalid choice: 'nope'"),
    (["rlrf4rec-loop"], "the following arguments are required: --out"),
])
def test_a_usage_error_is_one_line_and_status_2(capsys, argv, said):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and said in err, err
    assert err.startswith(f"rec-gym {argv[0]}: error: ") and err.rstrip().endswith(f"see rec-gym {argv[0]} --help")


@pytest.mark.parametrize("timesteps", ["0", "-5"])
def test_zero_or_negative_timesteps_are_refused_naming_the_value(capsys, timesteps):
    assert main(["train", "--algo", "ppo", "--env", "Re2LLM-Synthetic-v0", "--timesteps", timesteps]) == 2
    err = capsys.readouterr().err
    assert f"timesteps={timesteps} must be >= 1" in err and err.count("\n") == 1, err
