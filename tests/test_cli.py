"""The rec-gym command's own subcommands."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from rec_gym.cli import build_parser, main
from rec_gym.envs.arguments import parse_env_kwargs


def test_show_prints_the_prompt_and_the_llm_top_ten(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path))
    assert main(["show", "--env", "Re2LLM-Synthetic-v0", "--action", "4", "--env-kwargs", "split=val"]) == 0
    out = capsys.readouterr().out
    assert "Hint: Prefer lesser-known, niche films" in out and " 10. " in out


def test_env_kwargs_are_parsed_as_yaml_scalars():
    assert parse_env_kwargs(["n_candidates=20", "llm=simulated", "n_train=null"]) == {
        "n_candidates": 20, "llm": "simulated", "n_train": None}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_env_kwargs(["oops"])


def _walk(parser: argparse.ArgumentParser, name: str = "rec-gym"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, subparser in action.choices.items():
                yield from _walk(subparser, f"{name} {command}")
        else:
            yield name, action


def test_every_option_of_every_subcommand_has_help_text():
    walked = list(_walk(build_parser()))
    commands = {name for name, _ in walked}
    assert commands == {"rec-gym", *(f"rec-gym {c}" for c in ("envs", "show", "precompute", "build-kb", "train", "evaluate",
                                                            "benchmark", "train-recsys", "dpo-data", "dpo-train",
                                                            "rlrf4rec-loop"))}
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}" for name, action in walked
               if not action.help or action.help == argparse.SUPPRESS]
    assert missing == []


@pytest.mark.parametrize("argv, message", [
    (["show", "--action", "99"], "--action 99 is out of range: Re2LLM-Synthetic-v0 has actions 0..20"),
    (["show", "--env", "Nope-v0"], "unknown env id 'Nope-v0'"),
    (["show", "--env", "Re2LLMCompose-Synthetic-v0"], "--env 'Re2LLMCompose-Synthetic-v0' is not a one-hint env id"),
    (["show", "--env-kwargs", "colour=red"], "Re2LLM-Synthetic-v0 has no argument(s) colour; it accepts "),
    (["show", "--env-kwargs", "oops"], "--env-kwargs: expected key=value, got 'oops'"),
    (["evaluate", "--model", "nope.zip"], "nope.zip does not exist"),
    (["train", "--algo", "ppo", "--hyperparams", "nope.yml"], "hyperparameter file nope.yml does not exist"),
    (["train", "--algo", "ppo", "--env", "Nope-v0"], "Nope-v0"),
    (["benchmark", "--config", "nope"], "benchmark config 'nope' does not exist: pass a YAML file or a shipped name (full, quick)"),
    (["precompute", "--merge", "--shard", "0/2"], "--merge joins all shards; give it without --shard"),
])
def test_user_errors_print_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("REC_GYM_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rec-gym {argv[0]}: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert list((tmp_path / "cwd").iterdir()) == []  # a failed command leaves nothing behind


def test_debug_flag_and_environment_variable_show_the_traceback(tmp_path):
    command = [sys.executable, "-m", "rec_gym.cli", "--debug", "evaluate", "--model", str(tmp_path / "nope.zip")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" in done.stderr and "FileNotFoundError" in done.stderr
    quiet = subprocess.run(command[:3] + command[4:], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2 and quiet.stderr == f"rec-gym evaluate: error: {tmp_path / 'nope.zip'} does not exist: " \
        "pass a run folder written by `rec-gym train` or its model.zip\n"
    loud = subprocess.run(command[:3] + command[4:], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REC_GYM_DEBUG": "1"})
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def test_version_is_the_package_version(capsys):
    import rec_gym

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"rec-gym {rec_gym.__version__}\n"


def test_envs_lists_every_id_and_the_team(capsys):
    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS, RLRF4REC_ENV_IDS

    assert main(["envs"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [*ENV_IDS, *COMPOSE_ENV_IDS, *RLRF4REC_ENV_IDS, "hint_team_v0"]


def test_a_model_that_cannot_be_had_is_one_line_with_status_1(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = main(["show", "--env", "Re2LLM-Synthetic-v0", "--env-kwargs", "llm=hf:no-such-org/no-such-model"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("rec-gym show: error: could not load the hf model") and "Traceback" not in err
