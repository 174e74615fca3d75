"""Steam sessions in the LLaRA format: the real release files and hand-written ones."""

from __future__ import annotations

import json

import pytest

from rec_gym.data import load_dataset
from rec_gym.data.steam import load_steam, read_id2name


def test_real_steam_files_load_with_their_splits(shared_data):
    # test.jsonl line 915 has an empty history: that session is dropped with one warning.
    with pytest.warns(UserWarning, match=r"dropped 1 session\(s\) with an empty history") as caught:
        dataset = load_dataset("steam", shared_data)
    assert len(caught) == 1
    assert len(dataset.catalog) == 3581 and dataset.domain == "game"
    assert [(dataset.split == s).sum() for s in ("train", "val", "test")] == [1000, 1194, 1193]
    assert dataset.session_ids[0] == "train-1" and "test-915" not in set(dataset.session_ids)
    assert dataset.history.shape == (3387, 10)


def test_real_id2name_has_no_carriage_returns_and_keeps_double_colons(shared_data):
    catalog = read_id2name(shared_data / "steam-sessions" / "id2name.txt")
    assert catalog[0].title == "Ironbound" and catalog[1].title == "Real Pool 3D - Poolians"
    assert not any("\r" in item.title for item in catalog.items)
    assert sum("::" in item.title for item in catalog.items) == 1
    assert catalog[0].genres == () and catalog[0].year is None


def test_the_first_real_val_session_maps_ids_to_catalog_positions(shared_data):
    catalog, sessions = load_steam(shared_data / "steam-sessions")
    first_val = next(s for s in sessions if s.split == "val")
    # val.jsonl line 1: {"history": [2565, 52, 169, 3451, 316, 3328, 2520, 163, 174], "target": 66}
    assert [catalog[i].item_id for i in first_val.history] == ["2565", "52", "169", "3451", "316", "3328",
                                                                "2520", "163", "174"]
    assert catalog[first_val.target].item_id == "66" and first_val.session_id == "val-1"


def write_steam(folder, sessions_by_file):
    folder.mkdir()
    (folder / "id2name.txt").write_bytes(b"".join(f"{i}::Game {i}\r\n".encode() for i in range(30)))
    for name, lines in sessions_by_file.items():
        (folder / name).write_text("".join(line + "\n" for line in lines))


def test_train_jsonl_is_preferred_over_the_sample(tmp_path):
    line = json.dumps({"history": [1, 2, 3], "target": 4})
    write_steam(tmp_path / "s", {"train.jsonl": [line, line], "train_sample.jsonl": [line], "val.jsonl": [line],
                                 "test.jsonl": [line]})
    _, sessions = load_steam(tmp_path / "s")
    assert [s.split for s in sessions] == ["train", "train", "val", "test"]


def test_an_unknown_game_id_names_file_line_and_id(tmp_path):
    write_steam(tmp_path / "s", {"train.jsonl": [json.dumps({"history": [1, 2], "target": 3}),
                                                 json.dumps({"history": [1, 77], "target": 3})],
                                 "val.jsonl": [], "test.jsonl": []})
    with pytest.raises(ValueError, match=r"train.jsonl line 2: item id 77 is not in the catalog"):
        load_steam(tmp_path / "s")


def test_a_line_that_is_not_json_names_file_and_line(tmp_path):
    write_steam(tmp_path / "s", {"train.jsonl": [json.dumps({"history": [1], "target": 3})],
                                 "val.jsonl": ['{"history": [1, 2], "target": 3', ], "test.jsonl": []})
    with pytest.raises(ValueError, match=r"val.jsonl line 1: not valid JSON"):
        load_steam(tmp_path / "s")
