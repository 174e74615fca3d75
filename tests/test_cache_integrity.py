"""The caches that feed numbers to an agent check themselves: a damaged observation matrix or item vector is
reported once on stderr and built again; killed builds leave nothing the next build trips over, and a killed
encoding keeps the batches it committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rec_gym.data import load_dataset
from rec_gym.data import observations as observations_module
from rec_gym.data.embeddings import COMMIT_BATCH, EmbeddingStore, HashingEncoder, item_embeddings
from rec_gym.data.observations import CHECKSUM_SUFFIX, observation_matrix
from rec_gym.data.types import Catalog, Item

from test_observations import CountingEncoder

ROOT = Path(__file__).resolve().parents[1]


def catalog(n: int) -> Catalog:
    return Catalog([Item(str(i), f"Film {i}", {"genres": ("Drama",)}) for i in range(n)])


def flip_byte(path: Path, offset: int, mask: int = 0x01) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        value = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([value ^ mask]))


def rec_gym_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("rec_gym:")]


def observation_file() -> Path:
    files = list(Path(os.environ["REC_GYM_CACHE"], "observations").glob("*.npy"))
    assert len(files) == 1
    return files[0]


@pytest.mark.parametrize("mask", [0x01, 0x40], ids=["low-bit", "exponent-bit"])
def test_a_flipped_byte_in_an_observation_matrix_is_reported_once_and_the_matrix_rebuilt(capsys, mask):
    dataset = load_dataset("synthetic")
    rows = dataset.indices("val")
    expected = observation_matrix(dataset, rows, "profile", use_cache=False)
    observation_matrix(dataset, rows, "profile")
    path = observation_file()
    flip_byte(path, path.stat().st_size - 7, mask)  # inside the last row's numbers
    observations_module._MAPPED.clear()  # as a new process would start
    capsys.readouterr()
    matrix = observation_matrix(dataset, rows, "profile")
    lines = rec_gym_lines(capsys.readouterr().err)
    assert len(lines) == 1 and path.name in lines[0] and "checksum" in lines[0]
    np.testing.assert_array_equal(matrix, expected)
    observations_module._MAPPED.clear()
    observation_matrix(dataset, rows, "profile")  # rebuilt and intact: nothing more is said
    assert rec_gym_lines(capsys.readouterr().err) == []


def test_a_truncated_observation_matrix_or_a_lost_checksum_is_rebuilt(capsys):
    dataset = load_dataset("synthetic")
    rows = dataset.indices("val")
    expected = observation_matrix(dataset, rows, "profile", use_cache=False)
    observation_matrix(dataset, rows, "profile")
    path = observation_file()
    os.truncate(path, path.stat().st_size - 4)
    observations_module._MAPPED.clear()
    capsys.readouterr()
    np.testing.assert_array_equal(observation_matrix(dataset, rows, "profile"), expected)
    assert len(rec_gym_lines(capsys.readouterr().err)) == 1
    Path(str(path) + CHECKSUM_SUFFIX).unlink()
    observations_module._MAPPED.clear()
    np.testing.assert_array_equal(observation_matrix(dataset, rows, "profile"), expected)
    lines = rec_gym_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "no checksum" in lines[0]
    assert Path(str(path) + CHECKSUM_SUFFIX).exists()


SLOW_BUILD = """
import sys, time
from rec_gym.data import load_dataset
from rec_gym.data.embeddings import HashingEncoder
from rec_gym.data.observations import observation_matrix

class Stuck(HashingEncoder):
    name = "stuck-encoder"

    def encode(self, texts):
        open({started!r}, "w").close()
        time.sleep(120)

dataset = load_dataset("synthetic")
observation_matrix(dataset, dataset.indices("train"), "embedding", Stuck(16))
"""


def test_the_temporary_file_of_a_killed_observation_build_is_removed_by_the_next_build(tmp_path):
    load_dataset("synthetic")  # the sessions cache, so the subprocess reaches the build quickly
    started = tmp_path / "started"
    script = tmp_path / "build.py"
    script.write_text(SLOW_BUILD.format(started=str(started)))
    build = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert build.poll() is None and time.monotonic() < deadline, build.communicate()
        time.sleep(0.05)
    os.kill(build.pid, signal.SIGKILL)
    build.wait(30)
    folder = Path(os.environ["REC_GYM_CACHE"], "observations")
    leftovers = list(folder.glob(".*.tmp"))
    assert len(leftovers) == 1  # what the killed build left

    from filelock import FileLock

    # A temporary file whose build is alive (its lock is held) is left alone.
    live = folder / ".other-build.npy.abcd.tmp"
    live.write_bytes(b"in progress")
    dataset = load_dataset("synthetic")
    with FileLock(str(folder / "other-build.npy.lock")):
        observation_matrix(dataset, dataset.indices("val"), "profile")
    assert not leftovers[0].exists() and live.exists()


def store_path(encoder: str = "counting-encoder") -> Path:
    return Path(os.environ["REC_GYM_CACHE"], "embeddings", f"{encoder}.sqlite")


def test_a_flipped_byte_in_a_stored_item_vector_is_reported_once_and_that_item_encoded_again(capsys):
    items = catalog(40)
    expected = item_embeddings(items, CountingEncoder())
    path = store_path()
    content = path.read_bytes()  # the vectors are in the main file: the WAL is merged when the store closes
    # An item whose vector occurs once in the file (a narrow hashing of short titles repeats some vectors).
    k = next(k for k in range(40) if content.count(np.asarray(expected[k], dtype="<f4").tobytes()) == 1)
    flip_byte(path, content.index(np.asarray(expected[k], dtype="<f4").tobytes()) + 6)
    capsys.readouterr()
    encoder = CountingEncoder()
    again = item_embeddings(items, encoder)
    damage = [line for line in rec_gym_lines(capsys.readouterr().err) if "checksum" in line]
    assert len(damage) == 1 and str(path) in damage[0] and "1 stored item vectors" in damage[0]
    assert encoder.texts == [items.items[k].text()]
    np.testing.assert_array_equal(again, expected)


def test_a_short_vector_blob_is_encoded_again_and_one_under_a_valid_checksum_names_the_file(capsys):
    items = catalog(10)
    expected = item_embeddings(items, CountingEncoder())
    key = EmbeddingStore.key(items.items[3].text())
    with sqlite3.connect(store_path()) as conn:
        conn.execute("UPDATE item_vectors SET vector = substr(vector, 1, 8) WHERE key = ?", (key,))
    capsys.readouterr()
    encoder = CountingEncoder()
    np.testing.assert_array_equal(item_embeddings(items, encoder), expected)
    assert encoder.texts == [items.items[3].text()]
    assert any(str(store_path()) in line for line in rec_gym_lines(capsys.readouterr().err))
    short = np.zeros(2, dtype="<f4").tobytes()
    with sqlite3.connect(store_path()) as conn:
        conn.execute("UPDATE item_vectors SET vector = ?, checksum = ? WHERE key = ?",
                     (short, EmbeddingStore.checksum(key, short), key))
    with pytest.raises(ValueError, match=r"counting-encoder\.sqlite holds item vectors of different lengths \[2, 32\]"):
        item_embeddings(items, CountingEncoder())


def test_a_store_file_sqlite_cannot_read_is_replaced(capsys):
    items = catalog(10)
    expected = item_embeddings(items, CountingEncoder())
    with open(store_path(), "r+b") as fh:
        fh.write(b"\xff" * 100)  # the SQLite header
    capsys.readouterr()
    encoder = CountingEncoder()
    np.testing.assert_array_equal(item_embeddings(items, encoder), expected)
    lines = rec_gym_lines(capsys.readouterr().err)
    assert len([line for line in lines if "cannot be read" in line]) == 1
    assert len(encoder.texts) == 10


SLOW_ENCODING = """
import sys, time
sys.path.insert(0, {tests!r})
from test_cache_integrity import catalog
from test_observations import CountingEncoder
from rec_gym.data.embeddings import item_embeddings

class Slow(CountingEncoder):
    calls = 0

    def encode(self, texts):
        Slow.calls += 1
        with open({log!r}, "a") as fh:
            fh.write(f"{{len(texts)}}\\n")
        if Slow.calls == 3:
            time.sleep(120)  # the third batch never finishes: it is killed here
        return super().encode(texts)

item_embeddings(catalog({n}), Slow())
"""


def test_a_killed_encoding_keeps_the_batches_it_finished_and_the_rerun_encodes_only_the_rest(tmp_path):
    n = 2 * COMMIT_BATCH + 300
    log = tmp_path / "encoded.log"
    script = tmp_path / "encode.py"
    script.write_text(SLOW_ENCODING.format(tests=str(ROOT / "tests"), log=str(log), n=n))
    run = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not log.exists() or len(log.read_text().split()) < 3:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(30)
    with sqlite3.connect(store_path()) as conn:
        assert conn.execute("SELECT COUNT(*) FROM item_vectors").fetchone()[0] == 2 * COMMIT_BATCH
    encoder = CountingEncoder()
    vectors = item_embeddings(catalog(n), encoder)
    assert len(encoder.texts) == n - 2 * COMMIT_BATCH
    texts = [item.text() for item in catalog(n).items]
    np.testing.assert_allclose(vectors, HashingEncoder(CountingEncoder.dim).encode(texts), atol=1e-7)
