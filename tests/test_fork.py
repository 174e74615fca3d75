"""Async vector envs of every id start and step under each multiprocessing start method.

Each check runs in its own interpreter with a time limit, so a deadlocked worker fails the test
instead of hanging the suite. Before forking, the parent runs a torch op large enough to start
torch's OpenMP thread pool, as it has after training or loading a recommender or an encoder.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import write_session_folder

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi"]
TIME_LIMIT_S = 300

SCRIPT = textwrap.dedent("""
    import sys

    import gymnasium as gym
    import torch

    import rec_gym  # noqa: F401

    context, folder = sys.argv[1], sys.argv[2]
    torch.ones(1 << 22).mul(2.0).sum()
    ids = {
        "Re2LLM-Synthetic-v0": {"n_train": 30},
        "Re2LLMCompose-Synthetic-v0": {"n_train": 30, "max_hints": 2},
        "RLRF4Rec-Synthetic-v0": {"dataset": folder, "n_texts": 2, "recsys_training": {"epochs": 1}},
    }
    for env_id, kwargs in ids.items():
        envs = gym.make_vec(env_id, 2, vectorization_mode="async", vector_kwargs={"context": context}, **kwargs)
        envs.action_space.seed(0)
        observations, _ = envs.reset(seed=0)
        for _ in range(4):
            observations, *_ = envs.step(envs.action_space.sample())
        envs.close()
        print(env_id, len(observations), flush=True)
""")


@pytest.mark.parametrize("context", [c for c in ("fork", "forkserver", "spawn")
                                     if c in multiprocessing.get_all_start_methods()])
def test_async_vector_envs_of_every_id_step_under_each_start_method(tmp_path, context):
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": [GENRES[i % 4]],
              "creator": f"Director {i % 3}"} for i in range(60)]
    folder = write_session_folder(tmp_path / "tiny", items)
    # A session of its own, so that a deadlock's workers are killed with it rather than left behind.
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, context, str(folder)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        stdout, _ = child.communicate()
        pytest.fail(f"async vector envs under {context!r} did not finish in {TIME_LIMIT_S} s (a deadlocked worker); "
                    f"finished: {stdout.split()[::2]}")
    assert child.returncode == 0, stderr[-3000:]
    assert stdout.split() == ["Re2LLM-Synthetic-v0", "2", "Re2LLMCompose-Synthetic-v0", "2", "RLRF4Rec-Synthetic-v0", "2"]
