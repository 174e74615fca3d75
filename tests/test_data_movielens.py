"""MovieLens: ML-1M's '::' files (latin-1) over the real movies.dat, and the CSV releases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rec_gym.data import load_dataset
from rec_gym.data.movielens import load_ml1m, load_ml_csv, read_csv_movies, read_ml1m_movies, title_year

DAY = 86_400
T0 = 978_307_200  # 2001-01-01 00:00:00 UTC


@pytest.fixture
def ml1m(tmp_path, shared_data) -> Path:
    """A folder with the real ML-1M movies.dat; tests write ratings.dat in ML-1M's format."""
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    shutil.copy(shared_data / "ml-1m-catalog" / "movies.dat", folder / "movies.dat")
    return folder


def write_ratings(folder: Path, rows: list[tuple[int, int, int, int]]) -> None:
    text = "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows)
    (folder / "ratings.dat").write_text(text, encoding="latin-1")


def test_ml1m_movies_dat_is_read_as_latin1(shared_data):
    catalog = read_ml1m_movies(shared_data / "ml-1m-catalog" / "movies.dat")
    assert len(catalog) == 3883
    assert catalog[catalog.index_of("73")].title == "Misérables, Les (1995)"
    toy = catalog[catalog.index_of("1")]
    assert toy.title == "Toy Story (1995)" and toy.year == 1995
    assert toy.genres == ("Animation", "Children's", "Comedy")
    assert catalog.domain == "movie"


def test_a_utf8_copy_of_movies_dat_reads_the_same_titles(ml1m):
    path = ml1m / "movies.dat"
    path.write_text(path.read_bytes().decode("latin-1"), encoding="utf-8")
    assert read_ml1m_movies(path)[read_ml1m_movies(path).index_of("1873")].title == "Misérables, Les (1998)"


def test_ml1m_ratings_give_exact_day_sessions(ml1m):
    rows = []
    # user 1: 5 movies on day 0 -> one session; 3 on day 1 -> none
    rows += [(1, m, 4, T0 + 60 * k) for k, m in enumerate([1, 2, 3, 4, 5])]
    rows += [(1, m, 3, T0 + DAY + 60 * k) for k, m in enumerate([6, 7, 10])]
    # user 2: 4 on day 0 listed in reverse time order -> one session sorted by time
    rows += [(2, m, 5, T0 + 600 - 60 * k) for k, m in enumerate([11, 12, 13, 14])]
    write_ratings(ml1m, rows)
    catalog, sessions = load_ml1m(ml1m)
    ids = [[catalog[i].item_id for i in (*s.history, s.target)] for s in sessions]
    assert [s.session_id for s in sessions] == ["1:2001-01-01", "2:2001-01-01"]
    assert ids == [["1", "2", "3", "4", "5"], ["14", "13", "12", "11"]]
    assert len(catalog) == 3883  # unrated movies stay candidates


def test_ml1m_ratings_with_an_unknown_movie_name_the_line(ml1m):
    write_ratings(ml1m, [(1, 1, 4, T0), (1, 2, 4, T0 + 1), (1, 999999, 4, T0 + 2)])
    with pytest.raises(ValueError, match=r"ratings.dat line 3: movie id 999999 is not in movies.dat"):
        load_ml1m(ml1m)


def test_ml1m_ratings_with_a_missing_field_name_the_line(ml1m):
    (ml1m / "ratings.dat").write_text("1::1::4::978300760\n1::2::4::978300761\n1::3::978300762\n")
    with pytest.raises(ValueError, match=r"ratings.dat line 3: expected 4 fields separated by '::'.*got 3"):
        load_ml1m(ml1m)


def test_ml1m_ratings_with_a_non_number_name_the_line_and_value(ml1m):
    (ml1m / "ratings.dat").write_text("1::1::4::978300760\n\n1::x2::4::978300761\n")
    with pytest.raises(ValueError, match=r"ratings.dat line 3: MovieID 'x2' is not a number"):
        load_ml1m(ml1m)


def test_ml1m_movies_dat_with_a_bad_line_names_it(ml1m):
    (ml1m / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n2::Jumanji (1995)\n", encoding="latin-1")
    write_ratings(ml1m, [(1, 1, 4, T0)])
    with pytest.raises(ValueError, match=r"movies.dat line 2: expected 3 fields separated by '::'.*got 2"):
        load_ml1m(ml1m)


def test_line_numbers_stay_right_across_blank_lines(ml1m):
    (ml1m / "ratings.dat").write_text("1::1::4::978300760\r\n\r\n1::2::4::978300761\r\n\r\n1::424242::4::9783\r\n")
    with pytest.raises(ValueError, match=r"ratings.dat line 5: movie id 424242"):
        load_ml1m(ml1m)


def test_ml1m_loads_through_load_dataset_with_data_dir(ml1m):
    rows = [(u, m, 4, T0 + u * DAY + 60 * k) for u in range(1, 31) for k, m in enumerate(range(u, u + 6))]
    write_ratings(ml1m, rows)
    dataset = load_dataset("ml-1m", ml1m.parent)
    assert dataset.name == "ml-1m" and len(dataset) == 30 and dataset.domain == "movie"
    assert dataset.history.shape == (30, 5) and dataset.candidates.shape == (30, 50)


def test_title_year_handles_ranges_and_missing_years():
    assert title_year("Toy Story (1995)") == 1995
    assert title_year("Babylon 5 (1994-1998)") == 1994
    assert title_year("Paterson (2016) ") == 2016
    assert title_year("Black Mirror") is None


def write_csv_release(folder: Path, ratings: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
        '2,"American President, The (1995)",Comedy|Drama|Romance\n3,Some Doc,(no genres listed)\n'
        '4,Heat (1995),Action\n', encoding="utf-8")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + ratings, encoding="utf-8")


def test_csv_release_titles_with_commas_and_no_genres(tmp_path):
    write_csv_release(tmp_path / "ml", "")
    catalog = read_csv_movies(tmp_path / "ml" / "movies.csv")
    assert catalog[1].title == "American President, The (1995)" and catalog[1].year == 1995
    assert catalog[2].genres == () and catalog[2].year is None
    assert catalog[0].genres == ("Adventure", "Animation")


def test_csv_release_ratings_with_half_stars_give_sessions(tmp_path):
    write_csv_release(tmp_path / "ml", f"7,1,3.5,{T0}\n7,2,4.0,{T0 + 5}\n7,3,0.5,{T0 + 9}\n7,4,5.0,{T0 + 20}\n")
    catalog, sessions = load_ml_csv(tmp_path / "ml")
    assert [(s.session_id, s.history, s.target) for s in sessions] == [("7:2001-01-01", (0, 1, 2), 3)]


def test_csv_release_with_a_wrong_header_is_an_error(tmp_path):
    write_csv_release(tmp_path / "ml", "")
    (tmp_path / "ml" / "ratings.csv").write_text("user,movie,rating,time\n1,1,4,5\n")
    with pytest.raises(ValueError, match="ratings.csv line 1: expected the header userId,movieId,rating,timestamp"):
        load_ml_csv(tmp_path / "ml")


def test_real_ml_latest_small_loads_every_movie_and_its_sessions(shared_data):
    dataset = load_dataset("ml-latest-small", shared_data)
    assert len(dataset.catalog) == 9742
    assert dataset.catalog[0].title == "Toy Story (1995)"
    # 2,100 (user, UTC day) pairs with 4+ ratings, counted independently with csv + datetime.
    assert len(dataset) == 2100
    assert [(dataset.split == s).sum() for s in ("train", "val", "test")] == [1680, 210, 210]
    assert (dataset.candidates.shape[1], dataset.history.shape[1]) == (50, 20)
    row = int(dataset.indices("train")[0])
    assert not set(dataset.candidates[row].tolist()) & set(dataset.history_of(row).tolist())


def test_ratings_read_in_small_blocks_give_the_same_rows_and_line_numbers(ml1m, monkeypatch):
    import rec_gym.data.movielens as movielens

    rows = [(u, m, 3, T0 + 7 * u + m) for u in range(1, 9) for m in (1, 2, 3, 5, 6)]
    write_ratings(ml1m, rows)
    whole = movielens.read_ratings(ml1m / "ratings.dat", "::")
    monkeypatch.setattr(movielens, "_BLOCK_BYTES", 50)  # blocks end mid-line
    blocks = movielens.read_ratings(ml1m / "ratings.dat", "::")
    for a, b in zip(whole, blocks):
        assert a.tolist() == b.tolist()
    assert blocks[3].tolist() == list(range(1, 41)) and blocks[1].tolist()[:5] == [1, 2, 3, 5, 6]
    with open(ml1m / "ratings.dat", "a") as fh:
        fh.write("9::1::3::978300000\n9::1::3\n")
    with pytest.raises(ValueError, match=r"ratings.dat line 42: expected 4 fields"):
        movielens.read_ratings(ml1m / "ratings.dat", "::")


def test_a_csv_without_a_final_newline_keeps_its_last_row(tmp_path, monkeypatch):
    import rec_gym.data.movielens as movielens

    write_csv_release(tmp_path / "ml", f"7,1,3.5,{T0}\n7,2,4.0,{T0 + 5}\n7,3,0.5,{T0 + 9}\n7,4,5.0,{T0 + 20}")
    monkeypatch.setattr(movielens, "_BLOCK_BYTES", 16)
    user, movie, stamp, line = movielens.read_ratings(tmp_path / "ml" / "ratings.csv", ",",
                                                      movielens.CSV_RATINGS_HEADER)
    assert movie.tolist() == [1, 2, 3, 4] and line.tolist() == [2, 3, 4, 5] and stamp[-1] == T0 + 20
