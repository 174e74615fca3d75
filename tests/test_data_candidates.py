"""Candidate sets as real session files have them: of different sizes, with an item listed twice.

A folder session with 49 candidates beside sessions with 50 loads, the env steps on it with the
simulated backend, and prompts, rankings and rewards see only its 49 real candidates.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

from rec_gym.data import load_dataset
from rec_gym.llm.protocol import target_rank
from rec_gym.metrics import ndcg_at_k
from tests.test_data_folder import write_folder

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi"]
ITEMS = [{"item_id": i, "title": f"Film {i} ({1950 + i})", "genres": [GENRES[i % 4]]} for i in range(80)]


def candidate_folder(tmp_path):
    sessions = []
    for s in range(8):
        history = [s, s + 1, s + 2]
        target = 10 + s
        candidates = [target] + [c for c in range(20, 80) if c != target][:49]  # 50
        if s == 0:
            candidates = candidates[:49]  # 49 candidates
        if s == 1:
            candidates = candidates[:20] + [candidates[5]] + candidates[20:]  # 51 listed, one of them twice
        sessions.append({"history": history, "target": target, "candidates": candidates, "split": "train",
                         "session_id": f"s{s}"})
    return write_folder(tmp_path / "ragged", ITEMS, sessions, {"name": "ragged"})


def test_a_49_candidate_session_and_a_repeated_candidate_load_with_one_warning(tmp_path):
    folder = candidate_folder(tmp_path)
    with pytest.warns(UserWarning, match=r"dataset 'ragged': dropped 1 repeated candidate\(s\) in 1 session\(s\)") as caught:
        dataset = load_dataset(folder)
    assert len([w for w in caught if "repeated candidate" in str(w.message)]) == 1
    assert dataset.candidates.shape == (8, 50)
    assert dataset.candidate_counts.tolist() == [49, 50, 50, 50, 50, 50, 50, 50]
    assert dataset.candidates[0, 49] == -1 and (dataset.candidates[1:] >= 0).all()
    assert len(set(dataset.candidates_of(1).tolist())) == 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cached dataset does not warn again
        assert load_dataset(folder).candidate_counts[0] == 49


def test_the_env_steps_on_the_short_set_with_rewards_from_its_real_candidates(tmp_path):
    with pytest.warns(UserWarning, match="repeated candidate"):
        env = gym.make("Re2LLM-Synthetic-v0", dataset=str(candidate_folder(tmp_path)), llm="simulated",
                       encoder="hashing", observation="embedding")
    task = env.unwrapped.task
    i = int(np.flatnonzero(task.dataset.session_ids[task.rows] == "s0")[0])
    prompt = task.prompt(i, 0)
    shown = prompt.split("from a candidate set: ")[1].split(". Please recommend")[0].split("; ")
    assert len(shown) == 49 and "Film 10 (1960)" in shown

    env.reset(seed=0, options={"session_index": i})
    _, reward, terminated, _, info = env.step(1)
    request = task.table.request(task.dataset, i)
    target_pos = int(task.dataset.target_pos[task.rows[i]])
    with_hint, without = task.backend.rank([request.with_hint(task.kb.hint_for_action(1)), request])
    assert all(0 <= p < 49 for p in with_hint + without)
    expected = (target_rank(with_hint, target_pos), target_rank(without, target_pos))
    assert (info["rank"], info["baseline_rank"]) == expected
    assert reward == pytest.approx(ndcg_at_k(expected[0]) - ndcg_at_k(expected[1]))
    assert terminated and task.session_id(info["session_index"]) == "s0"
    assert task.table.max_rank == 50
    env.close()


def test_the_simulated_backend_never_ranks_a_pad(tmp_path):
    with pytest.warns(UserWarning, match="repeated candidate"):
        dataset = load_dataset(candidate_folder(tmp_path))
    from rec_gym.llm import make_llm
    from rec_gym.llm.protocol import RankRequest

    backend = make_llm("simulated")
    for row in range(len(dataset)):
        history, candidates = dataset.session_items(row)
        ranking = backend.rank([RankRequest(tuple(history), tuple(candidates), None, dataset.domain)])[0]
        assert len(candidates) == dataset.candidate_counts[row]
        assert ranking and max(ranking) < dataset.candidate_counts[row]
