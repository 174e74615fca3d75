"""The examples users read first run as written, and the README's and the quick start's tables name real ids.

The env manuals' kwargs tables are rendered on the documentation site's env pages, generated from the
docstrings at build time (tests/test_docs_site.py builds them); here each manual is checked against its
constructor, so the table a reader sees lists exactly the keyword arguments the env takes.
"""

from __future__ import annotations

import doctest
import inspect
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "guides" / "quickstart.md"


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


def _expanded(name: str) -> set[str]:
    """``Re2LLMCompose-{ML1M,Steam}-v0`` -> both ids; a name without braces -> itself."""
    parts = re.split(r"\{([^}]*)\}", name)
    choices = [[part] if k % 2 == 0 else part.split(",") for k, part in enumerate(parts)]
    return {"".join(combination) for combination in itertools.product(*choices)}


@pytest.mark.parametrize("module, cls", [("rec_gym.envs.re2llm", "Re2LLMEnv"),
                                         ("rec_gym.envs.compose", "Re2LLMComposeEnv"),
                                         ("rec_gym.envs.rlrf4rec", "RLRF4RecEnv")])
def test_env_manual_kwargs_table_lists_exactly_the_constructors_kwargs(module, cls):
    import importlib

    env_class = getattr(importlib.import_module(module), cls)
    taken = set(inspect.signature(env_class.__init__).parameters) - {"self", "kwargs"}
    # A row names its kwarg in the first cell; a row "others" lists the kwargs it shares with another env.
    rows = _table_after(inspect.getdoc(env_class), "| kwarg |")
    named = {name for row in rows for cell in (row if row[0] == "others" else row[:1])
             for name in re.findall(r"``(\w+)``", cell)}
    assert {"dataset", "split", "seed"} <= taken
    assert named == taken, f"{cls} manual: missing {sorted(taken - named)}, not taken {sorted(named - taken)}"


def test_every_id_in_the_readme_and_quick_start_tables_is_registered():
    import gymnasium as gym

    import rec_gym  # noqa: F401  (registers the ids)

    registered = {env_id for env_id, spec in gym.registry.items() if str(spec.entry_point).startswith("rec_gym.")}
    readme = {env_id for row in _table_after(README.read_text(), "| id |")
              for env_id in _expanded(re.sub(r"`+", "", row[0]).split(" ")[0])}
    assert readme == registered | {"rec_gym.envs.hint_team_v0"}, sorted(readme ^ (registered | {"rec_gym.envs.hint_team_v0"}))

    by_dataset = _table_after(QUICKSTART.read_text(), "| dataset | id |")
    assert {row[0] for row in by_dataset} >= {"MovieLens-1M", "MovieLens latest-small", "MovieLens-25M", "Steam",
                                              "your own sessions"}
    ids = {m for row in by_dataset for m in re.findall(r"`(Re2LLM[\w-]*-v\d+)`", row[1])}
    assert {"Re2LLM-ML1M-v0", "Re2LLM-Steam-v0", "Re2LLM-Synthetic-v0"} <= ids <= registered


def test_readme_fits_a_screen_and_holds_the_two_set_up_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert 'pip install torch==2.13.0 && pip install -e . && rec-gym benchmark --config quick' in text
    assert 'pip install torch==2.13.0 && pip install -e ".[test,zoo,rllib,eco]" && python -m pytest -q' in text
    assert "sphinx-build" in text
