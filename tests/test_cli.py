"""The rec-gym command's own subcommands."""

from __future__ import annotations

import pytest

from rec_gym.cli import main, parse_env_kwargs


def test_envs_lists_every_registered_id(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "Re2LLM-ML1M-v0" in out and "Re2LLM-Steam-v0" in out and "Re2LLM-Synthetic-v0" in out


def test_show_prints_the_prompt_and_the_llm_top_ten(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path))
    assert main(["show", "--env", "Re2LLM-Synthetic-v0", "--action", "4", "--env-kwargs", "split=val"]) == 0
    out = capsys.readouterr().out
    assert "Hint: Prefer lesser-known, niche films" in out and " 10. " in out


def test_env_kwargs_are_parsed_as_yaml_scalars():
    assert parse_env_kwargs(["n_candidates=20", "llm=simulated", "n_train=null"]) == {
        "n_candidates": 20, "llm": "simulated", "n_train": None}
    with pytest.raises(SystemExit, match="expected key=value"):
        parse_env_kwargs(["oops"])
