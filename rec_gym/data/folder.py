"""A custom dataset as a session folder: your own items and sessions, no code.

Layout::

    my-dataset/
      items.jsonl      {"item_id": 17, "title": "Alien (1979)", "year": 1979, "genres": ["Horror", "Sci-Fi"],
                        "creator": "Ridley Scott"}   one item per line; only item_id and title are required
      sessions.jsonl   {"history": [3, 17, 5], "target": 9}   one session per line, item ids oldest first;
                       optional "session_id" (default "line-<n>"), "split" ("train"/"val"/"test", default:
                       a seeded 80/10/10 split) and "candidates" (item ids, target included, used as given:
                       sessions may have different numbers; a repeated item is dropped with a warning)
                       The history must not be empty.
      dataset.json     optional: {"name": "my-dataset", "domain": "movie" | "game"}; a name is letters,
                       digits, '.', '_' and '-' (at most 64, no '/' or '..')

Item ids may be JSON numbers or strings; they are compared as strings. Item keys besides
``item_id`` and ``title`` become attributes (``genres`` a tuple of strings, ``year`` an int, other
strings are shown to the LLM and the encoder as ``key: value``). Without ``dataset.json`` the
name is the folder's name and the domain is the items' common ``"domain"`` key or ``"movie"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

from rec_gym.data.sessions import SPLITS, RawSession
from rec_gym.data.textfiles import parse_json, read_text, text_lines
from rec_gym.data.types import DOMAINS, Catalog, Item

ITEMS_FILE = "items.jsonl"
SESSIONS_FILE = "sessions.jsonl"
INFO_FILE = "dataset.json"
# Names end up in cache and table file names, so they are one plain path component.
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSON-lines file (UTF-8)."""
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            obj = parse_json(line, path, lineno)
        except ValueError as exc:
            raise ValueError(f"{exc}; each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path} line {lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def parse_session(obj: dict[str, Any], path: Path, lineno: int, catalog: Catalog, *,
                  default_id: str, default_split: str | None = None) -> RawSession:
    """One ``{"history": [ids], "target": id, ...}`` line as a :class:`RawSession` of catalog indices.

    The history may be empty here; a session folder refuses that (:func:`load_session_folder`).
    """
    where = f"{path} line {lineno}"
    if "history" not in obj or "target" not in obj:
        raise ValueError(f"{where}: a session needs the keys 'history' and 'target', got {sorted(obj)}")
    history = obj["history"]
    if not isinstance(history, list):
        raise ValueError(f"{where}: 'history' must be a list of item ids, got {history!r}")

    def index(item_id: Any) -> int:
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
            raise ValueError(f"{where}: item id {item_id!r} must be a string or an integer")
        if str(item_id) not in catalog:
            raise ValueError(f"{where}: item id {item_id!r} is not in the catalog; add it to the item list "
                             f"or remove it from the session")
        return catalog.index_of(str(item_id))

    candidates = obj.get("candidates")
    if candidates is not None and not isinstance(candidates, list):
        raise ValueError(f"{where}: 'candidates' must be a list of item ids, got {candidates!r}")
    split = obj.get("split", default_split)
    if split is not None and split not in SPLITS:
        raise ValueError(f"{where}: split {split!r} is not one of {SPLITS}")
    session_id = obj.get("session_id", default_id)
    return RawSession(session_id=str(session_id), history=tuple(index(i) for i in history),
                      target=index(obj["target"]), split=split,
                      candidates=None if candidates is None else tuple(index(i) for i in candidates))


def read_info(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder's ``dataset.json`` (``{}`` when absent)."""
    path = Path(folder) / INFO_FILE
    if not path.exists():
        return {}
    info = parse_json(read_text(path), path, 1)
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object like {{\"name\": ..., \"domain\": \"movie\"}}")
    if "domain" in info and info["domain"] not in DOMAINS:
        raise ValueError(f"{path}: domain {info['domain']!r} is not one of {DOMAINS}")
    if "name" in info and not (isinstance(info["name"], str) and _DATASET_NAME.fullmatch(info["name"])):
        raise ValueError(f"{path}: dataset name {info['name']!r} is not allowed; a name is 1 to 64 letters, digits, "
                         f"'.', '_' or '-' (no '/', no '..', no spaces), starting with a letter or digit, "
                         f"e.g. \"my-dataset\"")
    return info


def _item(obj: dict[str, Any], path: Path, lineno: int) -> Item:
    where = f"{path} line {lineno}"
    if "item_id" not in obj or "title" not in obj:
        raise ValueError(f"{where}: an item needs the keys 'item_id' and 'title', got {sorted(obj)}")
    item_id, title = obj["item_id"], obj["title"]
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
        raise ValueError(f"{where}: item_id {item_id!r} must be a string or an integer")
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"{where}: title {title!r} must be a non-empty string")
    attributes: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("item_id", "title", "domain") or value is None:
            continue
        if key == "year":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 9999:
                raise ValueError(f"{where}: year {value!r} must be an integer from 1 to 9999")
        elif key == "genres":
            if isinstance(value, str):
                value = [g for g in value.split("|") if g]
            if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
                raise ValueError(f"{where}: genres {value!r} must be a list of strings")
        elif key == "popularity":
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}: popularity {value!r} must be a number in [0, 1]")
            value = float(value)
        # Items are frozen and hashable-minded: lists become tuples.
        attributes[key] = tuple(value) if isinstance(value, list) else value
    return Item(str(item_id), title, attributes)


def load_session_folder(folder: str | os.PathLike) -> tuple[Catalog, list[RawSession]]:
    """The catalog and sessions of a session folder (layout in the module docstring)."""
    folder = Path(folder)
    items_path, sessions_path = folder / ITEMS_FILE, folder / SESSIONS_FILE
    missing = [p.name for p in (items_path, sessions_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a session folder: missing {', '.join(missing)}; it needs "
                                f"{ITEMS_FILE} ({{\"item_id\", \"title\", ...}} per line) and {SESSIONS_FILE} "
                                f"({{\"history\": [ids], \"target\": id}} per line)")
    info = read_info(folder)
    items: list[Item] = []
    first_line: dict[str, int] = {}
    domains: set[str] = set()
    for lineno, obj in iter_jsonl(items_path):
        item = _item(obj, items_path, lineno)
        if item.item_id in first_line:
            raise ValueError(f"{items_path} line {lineno}: item_id {item.item_id!r} already given on line "
                             f"{first_line[item.item_id]}; item ids must be unique")
        first_line[item.item_id] = lineno
        if "domain" in obj:
            domains.add(obj["domain"])
        items.append(item)
    if not items:
        raise ValueError(f"{items_path}: no items")
    domain = info.get("domain") or (domains.pop() if len(domains) == 1 else "movie")
    if domain not in DOMAINS:
        raise ValueError(f"{items_path}: domain {domain!r} is not one of {DOMAINS}")
    catalog = Catalog(items, domain=domain)
    sessions = []
    for lineno, obj in iter_jsonl(sessions_path):
        session = parse_session(obj, sessions_path, lineno, catalog, default_id=f"line-{lineno}")
        if not session.history:
            raise ValueError(f"{sessions_path} line {lineno}: 'history' is empty; a session needs at least one "
                             f"item before its target; remove the line or add its earlier items")
        sessions.append(session)
    if not sessions:
        raise ValueError(f"{sessions_path}: no sessions")
    return catalog, sessions
