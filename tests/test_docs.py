"""The examples users read first run as written: the env manual's doctest and the README's example."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.getbasetemp() / "env-cache"
    monkeypatch.setenv("REC_GYM_CACHE", str(path))
    return path


def test_env_manual_example_runs(cache):
    import rec_gym.envs.re2llm as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_readme_example_runs(cache):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if 'gym.make("Re2LLM-Synthetic-v0")' in b)
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    assert namespace["terminated"] is True
    assert namespace["model"].num_timesteps >= 1_024
