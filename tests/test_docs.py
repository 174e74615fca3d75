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


def _table_after(text: str, header_start: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first Markdown table whose header row starts with ``header_start``."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.strip().startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip().startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _names(cells: list[str]) -> set[str]:
    return {re.sub(r"`+", "", cell) for cell in cells}


def test_readme_kwargs_table_lists_every_kwarg_of_the_env_manual():
    from rec_gym.envs.re2llm import Re2LLMEnv

    manual = _names(row[0] for row in _table_after(Re2LLMEnv.__doc__, "| kwarg |"))
    readme = _names(row[0] for row in _table_after(README.read_text(), "| kwarg |"))
    assert {"dataset", "llm", "llm_kwargs", "render_mode", "observation"} <= manual
    assert readme == manual


def test_every_id_in_the_readme_tables_is_registered():
    import gymnasium as gym

    import rec_gym  # noqa: F401  (registers the ids)

    text = README.read_text()
    by_dataset = _table_after(text, "| dataset | id |")
    ids = {m for row in by_dataset for m in re.findall(r"`(Re2LLM[\w-]*-v\d+)`", row[1])}
    assert {row[0] for row in by_dataset} >= {"MovieLens-1M", "MovieLens latest-small", "MovieLens-25M", "Steam",
                                              "your own sessions"}
    ids |= {re.sub(r"`+", "", row[0]) for row in _table_after(text, "| id |")}
    assert {"Re2LLM-ML1M-v0", "Re2LLM-Steam-v0", "Re2LLM-Synthetic-v0"} <= ids
    assert all(env_id in gym.registry for env_id in ids), sorted(ids - set(gym.registry))
