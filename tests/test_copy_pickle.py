"""Every env pickles and deep-copies: the copy steps as the original does, and saves into the same table.

What a copy shares is stated in :mod:`rec_gym.feedback.table` ("Copies") and :mod:`rec_gym.llm.lazy`
("Copies"): the table by value with its path, a model-holding backend as its spec and arguments.
"""

from __future__ import annotations

import copy
import gc
import pickle
import subprocess
import sys
import weakref

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.envs import hint_team_v0
from rec_gym.feedback.table import FeedbackTable
from rec_gym.llm.lazy import lazy_llm

from conftest import write_session_folder

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi"]
COPIES = {"pickle": lambda env: pickle.loads(pickle.dumps(env)), "deepcopy": copy.deepcopy}


@pytest.fixture
def folder(tmp_path):
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": [GENRES[i % 4]],
              "creator": f"Director {i % 3}"} for i in range(60)]
    return str(write_session_folder(tmp_path / "tiny", items))


def _steps(env, actions) -> list[tuple]:
    """(observation, reward, terminated, rank) of each step, resetting (unseeded) after an episode ends."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs.tolist(), reward, terminated, info["rank"]))
        if terminated or truncated:
            env.reset()
    return out


def _gym_env(kind: str, table, folder):
    if kind == "Re2LLM":
        return gym.make("Re2LLM-Synthetic-v0", n_train=30, feedback_table=table)
    if kind == "Re2LLMCompose":
        return gym.make("Re2LLMCompose-Synthetic-v0", n_train=30, max_hints=2, feedback_table=table)
    return gym.make("RLRF4Rec-Synthetic-v0", dataset=folder, n_texts=4, recsys_training={"epochs": 1})


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("kind", ["Re2LLM", "Re2LLMCompose", "RLRF4Rec"])
def test_a_copy_of_a_gym_env_steps_as_the_original_does(tmp_path, folder, kind, how):
    env = _gym_env(kind, tmp_path / "table.npz", folder)
    env.reset(seed=3)
    _steps(env, [1])  # the copy is taken mid-run: its generator and position come along
    twin = COPIES[how](env)
    actions = [2, 0, 3, 1, 4, 2, 2, 0]
    assert _steps(twin, actions) == _steps(env, actions)
    twin.reset(seed=7)
    env.reset(seed=7)
    assert _steps(twin, actions) == _steps(env, actions)


@pytest.mark.parametrize("how", list(COPIES))
def test_a_copy_of_the_team_env_steps_as_the_original_does(tmp_path, how):
    env = hint_team_v0.parallel_env(n_agents=2, n_train=30, feedback_table=tmp_path / "table.npz")
    env.reset(seed=3)
    twin = COPIES[how](env)
    for env_ in (env, twin):
        env_.reset(seed=5)
    for picks in [(1, 2), (0, 4), (3, 3)]:
        a, b = ({agent: pick for agent, pick in zip(e.possible_agents, picks)} for e in (env, twin))
        stepped = [e.step(actions) for e, actions in ((env, a), (twin, b))]
        assert stepped[0][1] == stepped[1][1]  # rewards
        assert stepped[0][4]["retriever_0"]["rank"] == stepped[1][4]["retriever_0"]["rank"]
        env.reset()
        twin.reset()


@pytest.mark.parametrize("how", list(COPIES))
def test_a_copy_of_the_vector_env_steps_as_the_original_does(tmp_path, how):
    envs = gym.make_vec("Re2LLM-Synthetic-v0", 3, vectorization_mode="vector_entry_point", n_train=30,
                        feedback_table=tmp_path / "table.npz")
    envs.reset(seed=0)
    twin = COPIES[how](envs)
    for actions in ([1, 2, 3], [0, 5, 5], [4, 4, 1]):
        obs_a, rew_a, *_ = envs.step(actions)
        obs_b, rew_b, *_ = twin.step(actions)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)


def test_a_copys_answers_land_in_the_same_table_file(tmp_path):
    path = tmp_path / "table.npz"
    env = gym.make("Re2LLM-Synthetic-v0", n_train=30, feedback_table=path)
    env.reset(seed=0, options={"session_index": 0})
    env.step(1)  # unsaved in the original
    twin = copy.deepcopy(env)
    assert not path.exists()  # copying writes nothing
    twin.reset(options={"session_index": 1})
    twin.step(2)
    twin.close()
    on_disk = FeedbackTable.load(path)
    columns = [on_disk.column(()), on_disk.column([twin.unwrapped.task.kb[0]]), on_disk.column([twin.unwrapped.task.kb[1]])]
    known = on_disk.ranks[:2][:, columns] != -1
    # The copy carried the original's answers for session 0 and saved its own for session 1.
    assert known.tolist() == [[True, True, False], [True, False, True]]


def test_an_in_memory_table_is_copied_by_value(tmp_path):
    env = gym.make("Re2LLM-Synthetic-v0", n_train=30)
    env.unwrapped.task.table.path = None
    env.reset(seed=0, options={"session_index": 0})
    twin = copy.deepcopy(env)
    env.step(1)
    table, twin_table = env.unwrapped.task.table, twin.unwrapped.task.table
    assert twin_table is not table and twin_table.n_known == 0 < table.n_known


def test_a_lazy_backend_pickles_as_its_spec_and_loads_as_the_processes_shared_backend():
    backend = lazy_llm("embedding:all-MiniLM-L6-v2")
    assert not backend.built
    blob = pickle.dumps(backend)
    assert len(blob) < 1000  # the spec, not an encoder
    assert pickle.loads(blob) is backend and copy.deepcopy(backend) is backend
    check = ("import pickle, sys; b = pickle.loads(sys.stdin.buffer.read()); "
             "print(type(b).__name__, b.built, b.name)")
    done = subprocess.run([sys.executable, "-c", check], input=blob, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["LazyBackend", "False", backend.name]


def test_an_hf_backend_pickles_without_its_weights(tmp_path):
    pytest.importorskip("transformers")
    from llm_fixtures import build_tiny_llama, build_tokenizer, make_requests

    from rec_gym.llm.hf import HFBackend

    requests = make_requests(n_sessions=1)
    build_tiny_llama(tmp_path, build_tokenizer(tmp_path, requests), seed=0)
    backend = HFBackend(str(tmp_path), local_files_only=True)
    blob = pickle.dumps(backend)
    assert len(blob) < 2000
    assert pickle.loads(blob) is backend and copy.deepcopy(backend) is backend
    alive = weakref.ref(backend)
    del backend
    gc.collect()
    assert alive() is None  # pickling kept no model alive
