"""Steam game sessions in the LLaRA release format (Kang & McAuley's Steam data as LLaRA processed it).

Folder layout::

    steam/
      id2name.txt           "<id>::<title>" per line, UTF-8 (the release has Windows line ends)
      train.jsonl           {"history": [ids], "target": id} per line (or train_sample.jsonl)
      val.jsonl
      test.jsonl

The split of a session is its file's. Sessions with an empty history are dropped (one warning
says how many; the shared test file has one). Games have titles only (no genres or year); popularity is
filled from the sessions by :func:`rec_gym.data.sessions.assemble`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from rec_gym.data.folder import iter_jsonl, parse_session
from rec_gym.data.sessions import RawSession
from rec_gym.data.textfiles import text_lines
from rec_gym.data.types import Catalog, Item

CATALOG_FILE = "id2name.txt"
# The full training file wins over the 1,000-session sample when both are present.
SPLIT_FILES = {"train": ("train.jsonl", "train_sample.jsonl"), "val": ("val.jsonl",), "test": ("test.jsonl",)}


def split_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The session file used for each split present in ``folder``."""
    folder = Path(folder)
    found = {}
    for split, names in SPLIT_FILES.items():
        for name in names:
            if (folder / name).is_file():
                found[split] = folder / name
                break
    return found


def read_id2name(path: str | os.PathLike) -> Catalog:
    """The game catalog of ``id2name.txt``, in file order."""
    path = Path(path)
    items: list[Item] = []
    first_line: dict[str, int] = {}
    # text_lines drops the release's CRLF line ends, so no title ends in "\r".
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        fields = line.split("::", 1)
        if len(fields) != 2:
            raise ValueError(f"{path} line {lineno}: expected '<id>::<title>', got {line[:80]!r}")
        game_id, title = fields[0].strip(), fields[1].strip()
        if not game_id or not title:
            raise ValueError(f"{path} line {lineno}: empty id or title in {line[:80]!r}")
        if game_id in first_line:
            raise ValueError(f"{path} line {lineno}: id {game_id!r} already given on line {first_line[game_id]}")
        first_line[game_id] = lineno
        items.append(Item(game_id, title, {}))
    if not items:
        raise ValueError(f"{path}: no games")
    return Catalog(items, domain="game")


def load_steam(folder: str | os.PathLike) -> tuple[Catalog, list[RawSession]]:
    """Catalog (domain ``"game"``) and sessions, ``session_id`` = ``"<split>-<line>"``, split fixed by file."""
    folder = Path(folder)
    catalog_path = folder / CATALOG_FILE
    files = split_files(folder)
    if not catalog_path.is_file() or not files:
        raise FileNotFoundError(f"{folder} is not a Steam (LLaRA) folder: it needs {CATALOG_FILE} and the session "
                                f"files train.jsonl (or train_sample.jsonl), val.jsonl, test.jsonl")
    catalog = read_id2name(catalog_path)
    sessions = [parse_session(obj, path, lineno, catalog, default_id=f"{split}-{lineno}", default_split=split)
                for split, path in files.items() for lineno, obj in iter_jsonl(path)]
    # LLaRA's filtering left a few sessions with nothing before the target; no prompt can be made of them.
    empty = sum(not session.history for session in sessions)
    if empty:
        warnings.warn(f"{folder}: dropped {empty} session(s) with an empty history", stacklevel=2)
    return catalog, [session for session in sessions if session.history]
