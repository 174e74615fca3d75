"""Custom session folders: items.jsonl + sessions.jsonl (+ dataset.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rec_gym.data import load_dataset
from rec_gym.data.folder import load_session_folder


def write_folder(folder: Path, items: list[dict], sessions: list[dict], info: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    (folder / "sessions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sessions), encoding="utf-8")
    if info is not None:
        (folder / "dataset.json").write_text(json.dumps(info))
    return folder


ITEMS = [{"item_id": i, "title": f"Film {i}", "year": 1990 + i, "genres": ["Drama"], "creator": "A. Director",
          "mood": "calm"} for i in range(12)] + [{"item_id": "x-1", "title": "Ümlaut Film"}]


def test_a_session_folder_loads_ids_attributes_and_fields(tmp_path):
    sessions = [{"history": [0, "1", 2], "target": "x-1", "session_id": "first", "split": "val"},
                {"history": [3, 4], "target": 5, "candidates": [5, 6, 7]}]
    catalog, raw = load_session_folder(write_folder(tmp_path / "f", ITEMS, sessions))
    assert catalog[0].attributes == {"year": 1990, "genres": ("Drama",), "creator": "A. Director", "mood": "calm"}
    assert catalog[catalog.index_of("x-1")].title == "Ümlaut Film"
    assert raw[0].history == (0, 1, 2) and raw[0].target == 12 and raw[0].split == "val"
    assert raw[0].session_id == "first"
    assert raw[1].session_id == "line-2" and raw[1].split is None and raw[1].candidates == (5, 6, 7)
    assert "mood: calm" in catalog[0].text()


def test_dataset_json_gives_name_and_domain(tmp_path):
    sessions = [{"history": [i, i + 1], "target": i + 2} for i in range(8)]
    folder = write_folder(tmp_path / "f", ITEMS, sessions, {"name": "my-games", "domain": "game"})
    dataset = load_dataset(str(folder), n_candidates=5)
    assert dataset.name == "my-games" and dataset.domain == "game" and len(dataset) == 8


def test_without_dataset_json_the_folder_name_is_the_name(tmp_path):
    sessions = [{"history": [i, i + 1], "target": i + 2, "split": "test"} for i in range(8)]
    dataset = load_dataset(write_folder(tmp_path / "tiny-set", ITEMS, sessions), n_candidates=5)
    assert dataset.name == "tiny-set" and dataset.domain == "movie"
    assert set(dataset.split.tolist()) == {"test"}


def test_given_candidates_in_a_folder_are_kept(tmp_path):
    sessions = [{"history": [0, 1], "target": 2, "candidates": [9, 2, 4]}]
    dataset = load_dataset(write_folder(tmp_path / "f", ITEMS, sessions), n_candidates=3)
    assert [dataset.catalog[i].item_id for i in dataset.candidates[0]] == ["9", "2", "4"]


@pytest.mark.parametrize("items, sessions, message", [
    (ITEMS, [{"history": [0, 1], "target": 99}], r"sessions.jsonl line 1: item id 99 is not in the catalog"),
    (ITEMS, [{"history": [0, 1], "target": 2}, {"history": [0]}],
     r"sessions.jsonl line 2: a session needs the keys 'history' and 'target'"),
    (ITEMS, [{"history": [0, 1], "target": 2, "split": "dev"}], r"sessions.jsonl line 1: split 'dev'"),
    (ITEMS + [{"item_id": 3, "title": "Again"}], [], r"items.jsonl line 14: item_id '3' already given on line 4"),
    ([{"item_id": 1}], [], r"items.jsonl line 1: an item needs the keys 'item_id' and 'title'"),
    ([{"item_id": 1, "title": "A", "year": "1990s"}], [], r"items.jsonl line 1: year '1990s' must be an integer"),
])
def test_bad_folders_name_file_line_and_value(tmp_path, items, sessions, message):
    folder = write_folder(tmp_path / "f", items, sessions)
    with pytest.raises(ValueError, match=message):
        load_session_folder(folder)


def test_a_line_that_is_not_json_names_the_line(tmp_path):
    folder = write_folder(tmp_path / "f", ITEMS, [{"history": [0], "target": 1}])
    with open(folder / "sessions.jsonl", "a") as fh:
        fh.write("\n{history: [1]}\n")
    with pytest.raises(ValueError, match=r"sessions.jsonl line 3: not valid JSON"):
        load_session_folder(folder)


def test_a_folder_missing_its_files_says_which(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "items.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match="missing sessions.jsonl"):
        load_session_folder(tmp_path / "f")
