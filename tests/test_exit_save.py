"""An env or vector env that is never closed still saves every answer it got: at a normal interpreter
exit, and when the process is ended by SIGTERM. Each case is a real interpreter; nothing may reach stderr."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from rec_gym.feedback.table import FeedbackTable

CHILD = textwrap.dedent("""
    import sys
    import time

    import gymnasium as gym
    import numpy as np

    import rec_gym  # noqa: F401

    kind, table, ending = sys.argv[1:4]
    if kind == "env":
        env = gym.make("Re2LLM-Synthetic-v0", n_train=30, feedback_table=table)
        for action in range(1, 6):
            env.reset(seed=action)
            env.step(action)
        known = env.unwrapped.task.table.n_known
    elif kind == "vector":
        env = gym.make_vec("Re2LLM-Synthetic-v0", 4, vectorization_mode="vector_entry_point", n_train=30,
                           feedback_table=table)
        env.reset(seed=0)
        for action in range(1, 4):
            env.step([action] * 4)
        known = env.task.table.n_known
    else:  # the answers are in the forked workers' tables
        env = gym.make_vec("Re2LLM-Synthetic-v0", 2, vectorization_mode="async", vector_kwargs={"context": "fork"},
                           n_train=30, feedback_table=table)
        env.reset(seed=0)
        for action in range(1, 4):
            env.step([action] * 2)
        # Copies of the workers' tables, dropped at once (a live copy would be saved by this process at exit).
        known = int(np.logical_or.reduce([task.table.ranks != -1 for task in env.call("task")]).sum())
    print(known, flush=True)
    if ending == "sigterm":
        time.sleep(120)  # the parent sends SIGTERM now
""")


def _run(tmp_path, kind: str, ending: str) -> tuple[int, int, str, FeedbackTable]:
    """(entries the child knew, its exit status, its stderr, the table file read back)."""
    table = tmp_path / "table.npz"
    child = subprocess.Popen([sys.executable, "-c", CHILD, kind, str(table), ending], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        known = int(child.stdout.readline())
        if ending == "sigterm":
            child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    return known, child.returncode, stderr, FeedbackTable.load(table)


@pytest.mark.parametrize("kind", ["env", "vector", "async"])
def test_an_unclosed_env_saves_its_answers_when_the_interpreter_exits(tmp_path, kind):
    known, status, stderr, table = _run(tmp_path, kind, "exit")
    assert known > 0
    assert (status, stderr) == (0, "")
    assert table.n_known == known


@pytest.mark.parametrize("kind", ["env", "vector", "async"])
def test_an_unclosed_env_saves_its_answers_when_the_process_gets_sigterm(tmp_path, kind):
    known, status, stderr, table = _run(tmp_path, kind, "sigterm")
    assert known > 0
    assert (status, stderr) == (128 + signal.SIGTERM, "")
    assert table.n_known == known


def test_a_program_that_handles_sigterm_itself_keeps_its_handler(tmp_path):
    script = textwrap.dedent("""
        import signal
        import sys

        import gymnasium as gym

        import rec_gym  # noqa: F401

        def mine(signum, frame):
            pass

        signal.signal(signal.SIGTERM, mine)
        env = gym.make("Re2LLM-Synthetic-v0", n_train=30, feedback_table=sys.argv[1])
        env.reset(seed=0)
        env.step(1)
        print(signal.getsignal(signal.SIGTERM) is mine)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "table.npz")], capture_output=True, text=True,
                          timeout=120)
    assert (done.stdout.strip(), done.stderr) == ("True", "")


def test_a_table_whose_folder_was_removed_is_not_made_again_at_exit(tmp_path):
    script = textwrap.dedent("""
        import shutil
        import sys

        import gymnasium as gym

        import rec_gym  # noqa: F401

        folder = sys.argv[1]
        env = gym.make("Re2LLM-Synthetic-v0", n_train=30, feedback_table=folder + "/table.npz")
        env.reset(seed=0)
        env.step(1)
        shutil.rmtree(folder)
    """)
    folder = tmp_path / "scratch"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert not folder.exists()
