"""Observations are built once, in float32, into a cache file that every env copy and process maps read-only;
item embeddings are encoded once per item text, for the items histories hold, one process at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.data import load_dataset
from rec_gym.data.embeddings import HashingEncoder, item_embeddings, session_observations
from rec_gym.data.observations import observation_matrix
from rec_gym.data.profile import session_profiles
from rec_gym.data.types import Catalog, Item

ROOT = Path(__file__).resolve().parents[1]


class CountingEncoder:
    """The hashing encoder under a model's name, counting the texts it is asked to encode."""

    name = "counting-encoder"
    dim = 32

    def __init__(self) -> None:
        self.inner = HashingEncoder(self.dim)
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts.extend(texts)
        return self.inner.encode(texts)


def test_env_copies_share_one_read_only_matrix_equal_to_the_plain_computation():
    a = gym.make("Re2LLM-Synthetic-v0", observation="embedding+profile").unwrapped.task
    b = gym.make("Re2LLM-Synthetic-v0", observation="embedding+profile").unwrapped.task
    assert a.observations is b.observations and not a.observations.flags.writeable
    assert a.dataset is b.dataset  # one copy of the sessions too
    assert a.observations.dtype == np.float32 and isinstance(a.observations.base, np.memmap)
    embeddings = item_embeddings(a.dataset.catalog, "hashing")
    expected = np.hstack([session_observations(a.dataset.history[a.rows], embeddings),
                          session_profiles(a.dataset, use_cache=False)[a.rows]])
    np.testing.assert_allclose(a.observations, expected, atol=1e-6)
    obs, _ = gym.make("Re2LLM-Synthetic-v0", observation="embedding+profile").reset(seed=0)
    obs[0] = 5.0  # what an agent receives is its own copy


def test_another_process_maps_the_file_instead_of_building_it():
    task = gym.make("Re2LLM-Synthetic-v0").unwrapped.task
    files = list(Path(os.environ["REC_GYM_CACHE"], "observations").glob("synthetic-profile-*.npy"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    code = ("import gymnasium as gym, numpy as np, rec_gym\n"
            "o = gym.make('Re2LLM-Synthetic-v0').unwrapped.task.observations\n"
            "print(type(o.base).__name__, float(np.asarray(o, dtype=np.float64).sum()))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out[0] == "memmap" and float(out[1]) == pytest.approx(float(task.observations.astype(np.float64).sum()))
    assert files[0].stat().st_mtime_ns == before


def test_only_items_in_histories_are_encoded_and_a_larger_catalog_reuses_the_smaller_ones_work():
    encoder = CountingEncoder()
    items = [Item(str(i), f"Film {i}", {"genres": ("Drama",)}) for i in range(30)]
    small = item_embeddings(Catalog(items[:20]), encoder, items=[0, 3, 3, 7])
    assert sorted(encoder.texts) == sorted(items[i].text() for i in (0, 3, 7))
    assert np.count_nonzero(small.any(axis=1)) == 3 and small.shape == (20, 32)
    encoder.texts.clear()
    large = item_embeddings(Catalog(items), encoder)
    assert sorted(encoder.texts) == sorted(item.text() for k, item in enumerate(items) if k not in (0, 3, 7))
    np.testing.assert_array_equal(large[[0, 3, 7]], small[[0, 3, 7]])
    np.testing.assert_allclose(large, HashingEncoder(32).encode([i.text() for i in items]), atol=1e-7)


SLOW_BUILD = """
import sys, time
sys.path.insert(0, {tests!r})
from test_observations import CountingEncoder
from rec_gym.data import load_dataset
from rec_gym.data.observations import observation_matrix

class Slow(CountingEncoder):
    def encode(self, texts):
        with open({log!r}, "a") as fh:
            fh.write(f"{{len(texts)}}\\n")
        time.sleep({delay})
        return super().encode(texts)

dataset = load_dataset("synthetic")
rows = dataset.indices("train")
matrix = observation_matrix(dataset, rows, "embedding", Slow(), block=256)
print(matrix.shape, float(matrix.sum()))
"""


def _slow_build(tmp_path: Path, delay: float) -> subprocess.Popen:
    script = tmp_path / "build.py"
    script.write_text(SLOW_BUILD.format(tests=str(ROOT / "tests"), log=str(tmp_path / "encoded.log"), delay=delay))
    return subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _encoded(tmp_path: Path) -> list[int]:
    log = tmp_path / "encoded.log"
    return [int(n) for n in log.read_text().split()] if log.exists() else []


def test_two_processes_building_at_once_encode_the_catalog_once_and_agree(tmp_path):
    load_dataset("synthetic")  # the sessions cache, so that both processes reach the encoder together
    first, second = _slow_build(tmp_path, 1.0), _slow_build(tmp_path, 1.0)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert outs[0][0] == outs[1][0]
    dataset = load_dataset("synthetic")
    history = dataset.history[dataset.indices("train")]
    assert sum(_encoded(tmp_path)) == len(np.unique(history[history >= 0]))


def test_a_build_killed_mid_way_leaves_no_matrix_and_the_next_one_finishes(tmp_path):
    load_dataset("synthetic")
    killed = _slow_build(tmp_path, 30.0)
    deadline = time.monotonic() + 120
    while not _encoded(tmp_path):
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(30)
    folder = Path(os.environ["REC_GYM_CACHE"], "observations")
    assert not [p for p in folder.glob("*.npy")]
    dataset = load_dataset("synthetic")
    rows = dataset.indices("train")
    encoder = CountingEncoder()
    matrix = observation_matrix(dataset, rows, "embedding", encoder)
    assert matrix.shape == (rows.size, 32) and encoder.texts  # the killed run stored no vector either
    np.testing.assert_allclose(matrix, observation_matrix(dataset, rows, "embedding", CountingEncoder(), use_cache=False),
                               atol=1e-6)
