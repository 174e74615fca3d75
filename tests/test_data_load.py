"""load_dataset: name and path resolution, the on-disk cache, and errors that leave no cache behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import rec_gym.data.folder
from rec_gym.data import DATASETS, load_dataset
from rec_gym.data.sessions import RawSession
from rec_gym.data.types import Catalog, Item
from rec_gym.storage import cache_dir


@pytest.fixture
def folder(tmp_path) -> Path:
    """A session folder: 30 items, 20 sessions without splits."""
    path = tmp_path / "tiny"
    path.mkdir()
    rng = np.random.default_rng(0)
    (path / "items.jsonl").write_text("".join(
        json.dumps({"item_id": i, "title": f"Film {i}", "genres": ["Drama", "War"][: 1 + i % 2]}) + "\n"
        for i in range(30)))
    lines = []
    for _ in range(20):
        items = rng.choice(30, size=5, replace=False).tolist()
        lines.append(json.dumps({"history": items[:-1], "target": items[-1]}) + "\n")
    (path / "sessions.jsonl").write_text("".join(lines))
    return path


@pytest.fixture
def loader_calls(monkeypatch) -> list[Path]:
    """Counts the session-folder loader's calls (it is looked up on its module at call time)."""
    calls: list[Path] = []
    real = rec_gym.data.folder.load_session_folder

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(rec_gym.data.folder, "load_session_folder", counting)
    return calls


def cache_files() -> list[str]:
    return sorted(p.name for p in cache_dir("sessions").iterdir())


def assert_same(a, b) -> None:
    for field in ("history", "target", "candidates", "split", "session_ids", "target_pos"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.name == b.name and a.fingerprint == b.fingerprint
    assert a.catalog.items == b.catalog.items and a.catalog.domain == b.catalog.domain


def test_a_second_call_reads_the_cache_and_gives_the_same_dataset(folder, loader_calls):
    first = load_dataset(str(folder), n_candidates=10)
    second = load_dataset(str(folder), n_candidates=10)
    assert len(loader_calls) == 1
    assert_same(first, second)
    assert second.catalog[1].genres == ("Drama", "War")  # tuples survive the JSON round trip
    names = cache_files()
    assert len(names) == 2 and names[0].endswith(".catalog.json") and names[1].endswith(".npz")
    with np.load(cache_dir("sessions") / names[1], allow_pickle=False) as arrays:
        assert arrays["candidates"].shape == (20, 10)


def test_other_arguments_or_a_changed_source_file_miss_the_cache(folder, loader_calls):
    load_dataset(folder, n_candidates=10)
    load_dataset(folder, n_candidates=10, seed=1)
    load_dataset(folder, n_candidates=10, max_history=2)
    assert len(loader_calls) == 3
    with open(folder / "sessions.jsonl", "a") as fh:
        fh.write(json.dumps({"history": [1, 2], "target": 3}) + "\n")
    assert len(load_dataset(folder, n_candidates=10)) == 21
    assert len(loader_calls) == 4


def test_use_cache_false_neither_reads_nor_writes(folder, loader_calls):
    load_dataset(folder, n_candidates=10, use_cache=False)
    load_dataset(folder, n_candidates=10, use_cache=False)
    assert len(loader_calls) == 2 and cache_files() == []


def test_a_corrupt_cache_file_is_rebuilt(folder, loader_calls):
    first = load_dataset(folder, n_candidates=10)
    npz = next(cache_dir("sessions").glob("*.npz"))
    npz.write_bytes(b"not a zip")
    assert_same(first, load_dataset(folder, n_candidates=10))
    assert len(loader_calls) == 2


def test_a_failing_load_leaves_the_cache_folder_empty(folder):
    with open(folder / "sessions.jsonl", "a") as fh:
        fh.write('{"history": [1, 2], "target": 404}\n')
    with pytest.raises(ValueError, match=r"sessions.jsonl line 21: item id 404 is not in the catalog"):
        load_dataset(folder, n_candidates=10)
    assert cache_files() == []


def test_n_train_keeps_that_many_train_sessions(folder):
    dataset = load_dataset(folder, n_candidates=10, n_train=5)
    assert [(dataset.split == s).sum() for s in ("train", "val", "test")] == [5, 2, 2]


def test_an_unknown_name_lists_the_known_ones_and_the_folder_option():
    with pytest.raises(ValueError) as info:
        load_dataset("movielens-1m")
    message = str(info.value)
    assert "'movielens-1m'" in message and all(name in message for name in DATASETS)
    assert "session folder" in message


def test_a_missing_path_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"))


def test_a_relative_folder_is_looked_up_in_data_dir(folder):
    assert load_dataset("tiny", folder.parent, n_candidates=10).name == "tiny"


def test_synthetic_goes_through_assemble_with_the_seed(monkeypatch):
    import rec_gym.data.synthetic

    seeds = []

    def fake(seed=0):
        seeds.append(seed)
        items = [Item(str(i), f"Film {i}") for i in range(20)]
        return Catalog(items), [RawSession(f"s{k}", (k, k + 1), k + 2) for k in range(10)]

    monkeypatch.setattr(rec_gym.data.synthetic, "generate_synthetic", fake)
    dataset = load_dataset("synthetic", n_candidates=5, seed=7)
    assert seeds == [7] and dataset.name == "synthetic" and len(dataset) == 10
    assert dataset.catalog[0].popularity > 0  # filled by assemble


def test_a_raw_movielens_folder_given_as_a_path_is_recognised(shared_data):
    dataset = load_dataset(shared_data / "ml-latest-small")
    assert dataset.name == "ml-latest-small" and len(dataset.catalog) == 9742 and len(dataset) == 2100


def test_a_steam_folder_given_as_a_path_is_recognised(shared_data):
    dataset = load_dataset(os.fspath(shared_data / "steam-sessions"), n_train=100)
    assert dataset.domain == "game" and (dataset.split == "train").sum() == 100
    assert (dataset.split == "val").sum() == 1194


def test_the_default_synthetic_world_is_the_one_every_committed_result_used():
    import hashlib
    import json

    from rec_gym.data.synthetic import PREFERENCES, generate_synthetic

    catalog, sessions = generate_synthetic()
    digest = hashlib.sha256(json.dumps([[s.session_id, list(s.history), s.target] for s in sessions]).encode()).hexdigest()
    # The sessions of the default world before its generator was made linear in the number of sessions:
    # drawing from pools computed once changed the cost, not one session.
    assert digest == "318b054a09f6fd056714bcbd6985848d8fd8b36dd741c4b595a9f8ba4fb86b58"
    assert len(catalog) == 900 and len(sessions) == 4000
    assert {s.session_id.split("-")[0] for s in sessions} == set(PREFERENCES)


def test_a_large_synthetic_world_keeps_the_default_structure():
    from collections import Counter

    from rec_gym.data.synthetic import PREFERENCES, generate_synthetic

    catalog, sessions = generate_synthetic(n_sessions=28_000, n_items=3_600, seed=1)
    counts = Counter(s.session_id.split("-")[0] for s in sessions)
    assert len(catalog) == 3_600 and len(sessions) == 28_000
    assert min(counts[p] for p in PREFERENCES) > 3_800  # every preference, in about equal shares
    assert all(3 <= len(s.history) <= 15 and s.target not in s.history for s in sessions)
