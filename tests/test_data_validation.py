"""Faults in real data files: numbers out of range, the wrong text encoding, JSON nested too deeply,
empty histories and unsafe dataset names each give an error naming the file, the line and the fix."""

from __future__ import annotations

import json

import pytest

from rec_gym.data import load_dataset
from rec_gym.data.folder import load_session_folder
from rec_gym.data.movielens import CSV_RATINGS_HEADER, read_csv_movies, read_ratings
from rec_gym.data.steam import read_id2name
from tests.test_data_folder import ITEMS, write_folder


@pytest.mark.parametrize("field, value, name", [
    (1, "1193.7", "MovieID"), (1, "nan", "MovieID"), (1, "4294967297", "MovieID"), (1, "inf", "MovieID"),
    (0, "-1", "UserID"), (3, "978300760.5", "Timestamp"), (2, "nan", "Rating"),
])
def test_a_ratings_dat_number_out_of_range_names_file_line_and_field(tmp_path, field, value, name):
    fields = ["1", "1193", "5", "978300760"]
    fields[field] = value
    path = tmp_path / "ratings.dat"
    path.write_text("1::661::3::978302109\n\n" + "::".join(fields) + "\n")
    with pytest.raises(ValueError, match=rf"ratings.dat line 3: {name} '{value}' is not .*correct or remove the line"):
        read_ratings(path, "::")


def test_a_ratings_csv_id_that_is_not_an_integer_names_the_line(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(",".join(CSV_RATINGS_HEADER) + "\n1,31,2.5,1260759144\n1,1029.5,3.0,1260759179\n")
    with pytest.raises(ValueError, match=r"ratings.csv line 3: movieId '1029.5' is not an integer movie id"):
        read_ratings(path, ",", CSV_RATINGS_HEADER)


def test_valid_ratings_keep_their_exact_values(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("2147483647::0::5::-86400\n7::3952::1::1046454590\n")
    user, movie, stamp, line = read_ratings(path, "::")
    assert user.tolist() == [2147483647, 7] and movie.tolist() == [0, 3952]
    assert stamp.tolist() == [-86400, 1046454590] and line.tolist() == [1, 2]


@pytest.mark.parametrize("encoding, hint", [("utf-16", "it looks like UTF-16"), ("utf-16-le", "it has NUL bytes"),
                                            ("latin-1", "byte 0xe9 at column")])
def test_a_sessions_file_not_in_utf8_names_the_line_and_the_expected_encoding(tmp_path, encoding, hint):
    folder = write_folder(tmp_path / "f", ITEMS, [])
    lines = [json.dumps({"history": [0, 1], "target": 2}), json.dumps({"history": [0], "target": 3, "session_id": "é"},
                                                                       ensure_ascii=False)]
    (folder / "sessions.jsonl").write_bytes("\n".join(lines).encode(encoding))
    line = 2 if encoding == "latin-1" else 1
    with pytest.raises(ValueError, match=rf"sessions.jsonl line {line}: not UTF-8 text \({hint}.*expected encoding is UTF-8"):
        load_session_folder(folder)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    folder = write_folder(tmp_path / "f", ITEMS, [])
    (folder / "sessions.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"history": [0], "target": 1}).encode())
    assert load_session_folder(folder)[1][0].target == 1


def test_latin1_id2name_and_movies_csv_name_the_line(tmp_path):
    (tmp_path / "id2name.txt").write_bytes("1::Portal\r\n2::Pok\u00e9mon\r\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"id2name.txt line 2: not UTF-8 text"):
        read_id2name(tmp_path / "id2name.txt")
    (tmp_path / "movies.csv").write_bytes("movieId,title,genres\n1,Toy Story (1995),Comedy\n2,Mis\u00e9rables,"
                                          "Drama\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"movies.csv line 3: not UTF-8 text"):
        read_csv_movies(tmp_path / "movies.csv")


def test_a_json_line_nested_too_deeply_names_the_file_and_line(tmp_path):
    folder = write_folder(tmp_path / "f", ITEMS, [{"history": [0], "target": 1}])
    with open(folder / "sessions.jsonl", "a") as fh:
        fh.write('{"history": ' + "[" * 100_000 + "]" * 100_000 + ', "target": 1}\n')
    with pytest.raises(ValueError, match=r"sessions.jsonl line 2: JSON nested too deeply"):
        load_session_folder(folder)


def test_an_empty_history_in_a_session_folder_names_the_line(tmp_path):
    folder = write_folder(tmp_path / "f", ITEMS, [{"history": [0], "target": 1}, {"history": [], "target": 2}])
    with pytest.raises(ValueError, match=r"sessions.jsonl line 2: 'history' is empty"):
        load_session_folder(folder)


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "my data", "name\n", "", "x" * 65, 7, "café"])
def test_an_unsafe_dataset_name_is_refused(tmp_path, name):
    folder = write_folder(tmp_path / "f", ITEMS, [{"history": [0], "target": 1}], {"name": name})
    with pytest.raises(ValueError, match=r"dataset.json: dataset name .* is not allowed; a name is 1 to 64 letters"):
        load_dataset(folder, n_candidates=3)


def test_a_plain_dataset_name_is_used(tmp_path):
    folder = write_folder(tmp_path / "f", ITEMS, [{"history": [0], "target": 1}], {"name": "ml-1m_v2.small"})
    assert load_dataset(folder, n_candidates=3).name == "ml-1m_v2.small"


@pytest.mark.parametrize("field, value", [("year", 10**30), ("year", 1995.5), ("year", -1), ("popularity", float("nan")),
                                          ("popularity", float("inf"))])
def test_an_item_number_out_of_range_names_the_line(tmp_path, field, value):
    folder = write_folder(tmp_path / "f", [{"item_id": 1, "title": "A"}, {"item_id": 2, "title": "B", field: value}],
                          [{"history": [1], "target": 2}])
    with pytest.raises(ValueError, match=rf"items.jsonl line 2: {field} .* must be"):
        load_session_folder(folder)
