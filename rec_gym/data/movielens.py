"""MovieLens loaders: ML-1M (``::``-separated, latin-1) and the CSV releases (ml-latest-small, ml-25m).

Every rating is an interaction (the rating value is not used); interactions are cut into
sessions by :func:`rec_gym.data.sessions.sessionize_by_day`. The catalog is every movie of the
movie file, in file order, with ``item_id`` = the MovieLens movie id, the title as published
(``"Toy Story (1995)"``) and attributes ``year`` (from the title, when it has one) and ``genres``.

Ratings are parsed in blocks with :func:`numpy.loadtxt` (a C parser since numpy 1.23: about
0.5 s per million rows), so ML-1M loads in about a second and ml-25m's 25 million rows in
under a minute without holding the whole text in memory. When a block does not parse, the
block is scanned line by line to name the bad line.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np

from rec_gym.data.sessions import RawSession, sessionize_by_day
from rec_gym.data.textfiles import decode_line, text_lines
from rec_gym.data.types import Catalog, Item

ML1M_FILES = ("ratings.dat", "movies.dat")
CSV_FILES = ("ratings.csv", "movies.csv")
CSV_RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
CSV_MOVIES_HEADER = ["movieId", "title", "genres"]
NO_GENRES = "(no genres listed)"
# "Toy Story (1995)", "Babylon 5 (1994-1998)", trailing spaces as in a few ml-latest titles.
_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")
_BLOCK_BYTES = 64 << 20


def title_year(title: str) -> int | None:
    """The release year at the end of a MovieLens title, e.g. 1995 for ``"Toy Story (1995)"``."""
    match = _YEAR.search(title)
    return int(match.group(1)) if match else None


def _movie(movie_id: str, title: str, genres: str) -> Item:
    attributes: dict[str, object] = {}
    year = title_year(title)
    if year is not None:
        attributes["year"] = year
    names = tuple(g for g in genres.strip().split("|") if g and g != NO_GENRES)
    if names:
        attributes["genres"] = names
    return Item(movie_id, title, attributes)


def _decode_movies_dat(raw: bytes) -> str:
    # The official movies.dat is latin-1 ("Misérables" is byte 0xE9, invalid as UTF-8). A copy
    # someone re-encoded as UTF-8 decodes as UTF-8; decoding it as latin-1 would give "MisÃ©rables".
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_ml1m_movies(path: str | os.PathLike) -> Catalog:
    """The catalog of an ML-1M ``movies.dat`` (``MovieID::Title::Genres``, latin-1)."""
    path = Path(path)
    text = _decode_movies_dat(path.read_bytes())
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3:
            raise ValueError(f"{path} line {lineno}: expected 3 fields separated by '::' "
                             f"(MovieID::Title::Genres), got {len(fields)}: {line[:80]!r}")
        items.append(_checked_movie(path, lineno, fields, first_line))
    if not items:
        raise ValueError(f"{path}: no movies")
    return Catalog(items, domain="movie")


def read_csv_movies(path: str | os.PathLike) -> Catalog:
    """The catalog of a CSV release's ``movies.csv`` (``movieId,title,genres``, UTF-8, quoted titles)."""
    path = Path(path)
    items: list[Item] = []
    first_line: dict[str, int] = {}
    reader = csv.reader(line for _, line in text_lines(path))
    header = next(reader, None)
    if header != CSV_MOVIES_HEADER:
        raise ValueError(f"{path} line 1: expected the header {','.join(CSV_MOVIES_HEADER)}, got {header}")
    for fields in reader:
        lineno = reader.line_num
        if not fields:
            continue
        if len(fields) != 3:
            raise ValueError(f"{path} line {lineno}: expected 3 comma-separated fields (movieId,title,genres; "
                             f"quote titles that contain commas), got {len(fields)}")
        items.append(_checked_movie(path, lineno, fields, first_line))
    if not items:
        raise ValueError(f"{path}: no movies")
    return Catalog(items, domain="movie")


def _checked_movie(path: Path, lineno: int, fields: list[str], first_line: dict[str, int]) -> Item:
    movie_id = fields[0].strip()
    if not (movie_id.isascii() and movie_id.isdigit() and int(movie_id) < 2**31):
        raise ValueError(f"{path} line {lineno}: movie id {movie_id!r} is not an integer in 0..2147483647; "
                         f"correct or remove the line")
    movie_id = str(int(movie_id))
    if movie_id in first_line:
        raise ValueError(f"{path} line {lineno}: movie id {movie_id} already given on line {first_line[movie_id]}")
    first_line[movie_id] = lineno
    return _movie(movie_id, fields[1], fields[2])


def _blocks(path: Path, skip_header: bool):
    """``(first line number, bytes)`` blocks of whole lines, about ``_BLOCK_BYTES`` each."""
    with open(path, "rb") as fh:
        lineno = 1
        if skip_header:
            fh.readline()
            lineno = 2
        rest = b""
        while True:
            chunk = fh.read(_BLOCK_BYTES)
            if not chunk:
                if rest.strip():
                    yield lineno, rest
                return
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                rest = chunk
                continue
            block, rest = chunk[:cut], chunk[cut:]
            yield lineno, block
            lineno += block.count(b"\n")


def _explain_bad_block(path: Path, first_line: int, block: bytes, sep: str) -> ValueError:
    """The error naming the first line of ``block`` that is not four numbers."""
    fields_name = "UserID::MovieID::Rating::Timestamp" if sep == "::" else "userId,movieId,rating,timestamp"
    for offset, raw in enumerate(block.split(b"\n")):
        line = raw.decode("latin-1").rstrip("\r")
        if not line:  # loadtxt skips empty lines only; a line of spaces is an error there too
            continue
        fields = line.split(sep)
        where = f"{path} line {first_line + offset}"
        if len(fields) != 4:
            return ValueError(f"{where}: expected 4 fields separated by {sep!r} ({fields_name}), "
                              f"got {len(fields)}: {line[:80]!r}")
        for name, value in zip(fields_name.split(sep), fields):
            try:
                float(value)
            except ValueError:
                return ValueError(f"{where}: {name} {value!r} is not a number")
    last_line = first_line + block.count(b"\n")
    return ValueError(f"{path} lines {first_line}..{last_line}: could not be parsed as {fields_name}")


# Per column: what a value must be, its smallest and largest value, and whether it must be whole.
_COLUMN_RULES = (
    ("an integer user id in 0..2147483647", 0, 2**31 - 1, True),
    ("an integer movie id in 0..2147483647", 0, 2**31 - 1, True),
    ("a finite number", -np.inf, np.inf, False),
    ("a whole number of Unix seconds", -(2**53), 2**53, True),
)


def _check_ranges(values: np.ndarray, path: Path, first_line: int, block: bytes, sep: str) -> None:
    """Raise naming the first line of ``block`` whose ids or timestamp are not whole numbers in range.

    loadtxt reads every field as a float, so ``1193.7``, ``nan``, ``inf``, ``-1`` and ``4294967297``
    parse; casting them to int32 ids would silently give other movies.
    """
    fields_name = ("UserID::MovieID::Rating::Timestamp" if sep == "::" else "userId,movieId,rating,timestamp").split(sep)
    for column, (expected, low, high, whole) in enumerate(_COLUMN_RULES):
        value = values[:, column]
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(value) | (value < low) | (value > high)
            if whole:
                bad |= value != np.floor(value)
        if bad.any():
            row = int(np.argmax(bad))
            lineno = int(_line_numbers(block, first_line, len(values))[row])
            line = block.split(b"\n")[lineno - first_line].decode("latin-1").rstrip("\r")
            raise ValueError(f"{path} line {lineno}: {fields_name[column]} {line.split(sep)[column]!r} is not "
                             f"{expected} ({int(bad.sum())} such line(s) in this part of the file); correct or "
                             f"remove the line")


def read_ratings(path: str | os.PathLike, sep: str, header: list[str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(user, movie, timestamp, line)``: ``(n,)`` columns of a ratings file and each row's line number.

    user, movie and line are int32, timestamp int64 (Unix seconds).

    ``sep`` is ``"::"`` (ML-1M) or ``","`` (CSV releases, whose first line must be ``header``).
    """
    path = Path(path)
    if header is not None:
        with open(path, "rb") as fh:
            found = decode_line(fh.readline(), path, 1).strip().split(sep)
        if found != header:
            raise ValueError(f"{path} line 1: expected the header {sep.join(header)}, got {sep.join(found)!r}")
    users, movies, stamps, lines = [], [], [], []
    for first_line, block in _blocks(path, skip_header=header is not None):
        # loadtxt wants a one-character delimiter; a ratings line holds only digits and separators.
        text = block.replace(b"::", b",") if sep == "::" else block
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data" for a blank block
                values = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float64, ndmin=2, comments=None)
        except ValueError:
            raise _explain_bad_block(path, first_line, block, sep) from None
        if values.size == 0:
            continue
        if values.shape[1] != 4:
            raise _explain_bad_block(path, first_line, block, sep)
        _check_ranges(values, path, first_line, block, sep)
        # int32 ids and line numbers halve the memory of ml-25m's 25M rows; timestamps need int64.
        users.append(values[:, 0].astype(np.int32))
        movies.append(values[:, 1].astype(np.int32))
        stamps.append(values[:, 3].astype(np.int64))
        lines.append(_line_numbers(block, first_line, len(values)))
    if not users:
        raise ValueError(f"{path}: no ratings")
    return np.concatenate(users), np.concatenate(movies), np.concatenate(stamps), np.concatenate(lines)


def _line_numbers(block: bytes, first_line: int, n_rows: int) -> np.ndarray:
    """Line number of each data row of ``block`` (blank lines, which loadtxt skips, are not rows)."""
    starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n")) + 1])
    starts = starts[starts < len(block)]
    if len(starts) == n_rows:
        return first_line + np.arange(n_rows, dtype=np.int32)
    nonblank = [i for i, line in enumerate(block.split(b"\n")) if line.strip()]
    return first_line + np.asarray(nonblank[:n_rows], dtype=np.int32)


def _to_catalog_indices(catalog: Catalog, movies: np.ndarray, lines: np.ndarray, ratings_path: Path,
                        movies_path: Path) -> np.ndarray:
    ids = np.array([int(item.item_id) for item in catalog.items], dtype=np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], movies)
    pos_clipped = np.minimum(pos, len(ids) - 1)
    unknown = ids[order][pos_clipped] != movies
    if unknown.any():
        row = int(np.argmax(unknown))
        raise ValueError(f"{ratings_path} line {lines[row]}: movie id {movies[row]} is not in {movies_path.name} "
                         f"({int(unknown.sum())} ratings refer to unknown movies); use the {movies_path.name} "
                         f"of the same release")
    return order[pos_clipped]


def _load(catalog: Catalog, ratings_path: Path, movies_path: Path, sep: str,
          header: list[str] | None, max_history: int | None) -> tuple[Catalog, list[RawSession]]:
    user, movie, timestamp, lines = read_ratings(ratings_path, sep, header)
    item = _to_catalog_indices(catalog, movie, lines, ratings_path, movies_path)
    sessions = sessionize_by_day(user, item, timestamp, max_history=max_history)
    if not sessions:
        raise ValueError(f"{ratings_path}: no user has 4 or more ratings within one calendar day (UTC), "
                         f"so there are no sessions")
    return catalog, sessions


def load_ml1m(folder: str | os.PathLike, *, max_history: int | None = None) -> tuple[Catalog, list[RawSession]]:
    """Catalog and day sessions of an ML-1M folder (``ratings.dat``, ``movies.dat``)."""
    folder = Path(folder)
    _require(folder, ML1M_FILES)
    movies_path = folder / "movies.dat"
    return _load(read_ml1m_movies(movies_path), folder / "ratings.dat", movies_path, "::", None, max_history)


def load_ml_csv(folder: str | os.PathLike, *, max_history: int | None = None) -> tuple[Catalog, list[RawSession]]:
    """Catalog and day sessions of a CSV release folder (ml-latest-small, ml-25m: ``ratings.csv``, ``movies.csv``)."""
    folder = Path(folder)
    _require(folder, CSV_FILES)
    movies_path = folder / "movies.csv"
    return _load(read_csv_movies(movies_path), folder / "ratings.csv", movies_path, ",",
                 CSV_RATINGS_HEADER, max_history)


def _require(folder: Path, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)} (a MovieLens folder needs {', '.join(names)})")
