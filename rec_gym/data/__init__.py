"""Datasets as session sets with fixed candidates: one call, cached on disk.

>>> from rec_gym.data import load_dataset
>>> dataset = load_dataset("synthetic")                     # doctest: +SKIP
>>> dataset = load_dataset("ml-1m", data_dir="~/data")      # doctest: +SKIP
>>> dataset = load_dataset("path/to/my-sessions")           # doctest: +SKIP

``dataset`` is one of :data:`DATASETS` or a folder: a session folder (``items.jsonl`` +
``sessions.jsonl``, see :mod:`rec_gym.data.folder`) or a folder in one of the known raw formats
(ML-1M, a MovieLens CSV release, Steam/LLaRA), which is recognised by its files.

The assembled arrays are cached under ``<cache>/sessions/`` (``$REC_GYM_CACHE`` or
``~/.cache/rec_gym``) as ``.npz`` plus the catalog as JSON, keyed by the dataset, the size and
modification time of its source files and the arguments; a second call reads the cache. No
pickle is written or read.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rec_gym.data import download, folder as session_folder, movielens, steam
from rec_gym.data.download import DatasetNotFoundError, fetch
from rec_gym.data.sessions import MAX_HISTORY, RawSession, assemble
from rec_gym.data.types import Catalog, Item, SessionDataset
from rec_gym.storage import atomic_path, cache_dir, stable_hash, write_json_atomic

DATASETS: tuple[str, ...] = ("ml-1m", "ml-latest-small", "ml-25m", "steam", "synthetic")
# Bump when parsing or assembling changes what a cached dataset holds.
CACHE_FORMAT = 2  # 2: ragged candidate sets (-1 padded), Steam's empty histories dropped
_LOADED: "dict[str, tuple[weakref.ref, tuple[int, int] | None]]" = {}

__all__ = ["DATASETS", "Catalog", "DatasetNotFoundError", "Item", "RawSession", "SessionDataset", "assemble",
           "load_dataset"]


@dataclass(frozen=True)
class _Source:
    """Where a dataset's sessions come from: a loader ``kind``, its folder and the files it reads."""

    name: str
    kind: str  # "synthetic", "ml-1m", "ml-csv", "steam" or "folder"
    folder: Path | None
    files: tuple[Path, ...]


def load_dataset(dataset: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
                 n_candidates: int = 50, seed: int = 0, n_train: int | None = None, max_history: int = MAX_HISTORY,
                 use_cache: bool = True) -> SessionDataset:
    """Load, sessionize and assemble a dataset (see :func:`rec_gym.data.sessions.assemble` for the protocol).

    Args:
        dataset: a name from :data:`DATASETS` or the path of a dataset folder.
        data_dir: where a named dataset's raw files are (the folder or its parent); default:
            ``$REC_GYM_DATA/<name>``, then the download cache, then a download (MovieLens only).
        n_candidates: candidates per session, target included.
        seed: seeds candidates, splits, the ``n_train`` draw (and the synthetic world).
        n_train: keep only this many random train sessions (the paper's few-shot setting: 500).
        max_history: most recent history items kept per session.
        use_cache: read and write the assembled arrays under ``<cache>/sessions/``.

    Raises:
        ValueError: an unknown name, or bad data (the message names file, line and value).
        DatasetNotFoundError: a named dataset's files are missing and cannot be downloaded.
    """
    source = _resolve(dataset, data_dir)
    stats = [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in source.files]
    identity = source.kind if source.folder is None else f"{source.kind}:{source.folder.resolve()}"
    key = stable_hash("sessions", CACHE_FORMAT, source.name, identity, stats, n_candidates, seed, n_train, max_history)
    base = cache_dir("sessions") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', source.name)}-{key}"
    arrays_path, catalog_path = Path(f"{base}.npz"), Path(f"{base}.catalog.json")
    if use_cache:
        # Env copies in one process share one dataset instead of one copy each, while its cache file is
        # the one it was read from (a file replaced or damaged since is read again).
        loaded = _shared_dataset(arrays_path)
        if loaded is not None:
            return loaded
        cached = _read_cache(arrays_path, catalog_path)
        if cached is not None:
            _share_dataset(arrays_path, cached)
            return cached
    catalog, sessions = _read_source(source, seed, max_history)
    result = assemble(source.name, catalog, sessions, n_candidates=n_candidates, seed=seed, n_train=n_train,
                      max_history=max_history)
    if use_cache:
        _write_cache(result, arrays_path, catalog_path)
        _share_dataset(arrays_path, result)
    return result


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _shared_dataset(path: Path) -> "SessionDataset | None":
    entry = _LOADED.get(str(path))
    if entry is None:
        return None
    dataset, state = entry[0](), entry[1]
    return dataset if dataset is not None and state == _file_state(path) else None


def _share_dataset(path: Path, dataset: "SessionDataset") -> None:
    _LOADED[str(path)] = (weakref.ref(dataset), _file_state(path))


def _resolve(dataset: str | os.PathLike, data_dir: str | os.PathLike | None) -> _Source:
    if isinstance(dataset, str) and dataset.lower() in DATASETS:
        name = dataset.lower()
        if name == "synthetic":
            spec = importlib.util.find_spec("rec_gym.data.synthetic")
            # The generator's source file stands in for data files: editing it invalidates the cache.
            files = (Path(spec.origin),) if spec is not None and spec.origin else ()
            return _Source(name, "synthetic", None, files)
        folder = fetch(name, data_dir)
        kind = "ml-csv" if name in ("ml-latest-small", "ml-25m") else name
        return _Source(name, kind, folder, tuple(download.source_files(name, folder)))
    path = Path(dataset).expanduser()
    if not path.is_dir() and data_dir is not None and (Path(data_dir).expanduser() / path).is_dir():
        path = Path(data_dir).expanduser() / path
    if path.is_dir():
        return _folder_source(path)
    text = os.fspath(dataset)
    if not isinstance(dataset, str) or os.sep in text or "/" in text:
        raise FileNotFoundError(f"dataset folder {text!r} does not exist")
    raise ValueError(f"unknown dataset {dataset!r}: use one of {DATASETS} or the path of a session folder "
                     f"(items.jsonl + sessions.jsonl, see rec_gym.data.folder)")


def _folder_source(path: Path) -> _Source:
    """Recognise a folder's format by its files."""
    if (path / session_folder.ITEMS_FILE).is_file() and (path / session_folder.SESSIONS_FILE).is_file():
        info = session_folder.read_info(path)
        files = [path / f for f in (session_folder.ITEMS_FILE, session_folder.SESSIONS_FILE, session_folder.INFO_FILE)]
        return _Source(str(info.get("name") or path.resolve().name), "folder", path,
                       tuple(f for f in files if f.is_file()))
    for name, kind in (("ml-1m", "ml-1m"), ("ml-latest-small", "ml-csv")):
        if download.has_files(name, path):
            return _Source(path.resolve().name, kind, path, tuple(download.source_files(name, path)))
    if (path / steam.CATALOG_FILE).is_file() and steam.split_files(path):
        return _Source(path.resolve().name, "steam", path, tuple(download.source_files("steam", path)))
    raise FileNotFoundError(
        f"{path} holds no dataset rec_gym can read: expected items.jsonl + sessions.jsonl (a session folder), "
        f"ratings.dat + movies.dat (ML-1M), ratings.csv + movies.csv (MovieLens CSV) or id2name.txt + "
        f"train/val/test .jsonl (Steam)")


def _read_source(source: _Source, seed: int, max_history: int) -> tuple[Catalog, list[RawSession]]:
    # Loaders are looked up on their modules at call time, so each has one definition to patch.
    if source.kind == "synthetic":
        from rec_gym.data.synthetic import generate_synthetic

        return generate_synthetic(seed=seed)
    assert source.folder is not None
    if source.kind == "ml-1m":
        return movielens.load_ml1m(source.folder, max_history=max_history)
    if source.kind == "ml-csv":
        return movielens.load_ml_csv(source.folder, max_history=max_history)
    if source.kind == "steam":
        return steam.load_steam(source.folder)
    return session_folder.load_session_folder(source.folder)


def _write_cache(dataset: SessionDataset, arrays_path: Path, catalog_path: Path) -> None:
    # The catalog first, the arrays last: an .npz on disk means both are complete.
    items = [{"item_id": item.item_id, "title": item.title, "attributes": dict(item.attributes)}
             for item in dataset.catalog.items]
    write_json_atomic(catalog_path, {"domain": dataset.catalog.domain, "items": items})
    with atomic_path(arrays_path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, name=np.array(dataset.name), fingerprint=np.array(dataset.fingerprint),
                 history=dataset.history, target=dataset.target, candidates=dataset.candidates,
                 split=dataset.split, session_ids=dataset.session_ids)


def _read_cache(arrays_path: Path, catalog_path: Path) -> SessionDataset | None:
    """The cached dataset, or ``None`` when absent or unreadable (it is then rebuilt and overwritten)."""
    if not (arrays_path.is_file() and catalog_path.is_file()):
        return None
    try:
        meta = json.loads(catalog_path.read_text(encoding="utf-8"))
        items = [Item(str(d["item_id"]), str(d["title"]), _tuples(d["attributes"])) for d in meta["items"]]
        catalog = Catalog(items, domain=meta["domain"])
        with np.load(arrays_path, allow_pickle=False) as arrays:
            return SessionDataset(name=str(arrays["name"]), catalog=catalog, history=arrays["history"],
                                  target=arrays["target"], candidates=arrays["candidates"], split=arrays["split"],
                                  session_ids=arrays["session_ids"], fingerprint=str(arrays["fingerprint"]))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None


def _tuples(attributes: dict[str, Any]) -> dict[str, Any]:
    # JSON has no tuples; loaders store sequences (genres) as tuples.
    return {key: tuple(value) if isinstance(value, list) else value for key, value in attributes.items()}
