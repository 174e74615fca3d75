"""Session observations built once per machine and memory-mapped by every env that reads them.

An environment's observation of a session is the mean embedding of its history items, its profile
(:mod:`rec_gym.data.profile`), or both side by side. :func:`observation_matrix` computes the matrix
of one split in float32, a block of sessions at a time, straight into a ``.npy`` file under
``$REC_GYM_CACHE/observations`` named by what it is made of (observation kind, encoder, the item
texts, the sessions' histories). Every env copy and every process then maps that file read-only, so
eight training envs and a validation env hold one matrix between them, in the page cache. A file lock
makes a second process wait for the first build instead of repeating it; a build that is killed
leaves no file behind.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rec_gym.data.embeddings import encoder_name, item_embeddings, mean_history_embedding
from rec_gym.data.profile import PROFILE_VERSION, _CatalogArrays, _profile_block
from rec_gym.data.types import SessionDataset
from rec_gym.storage import atomic_path, cache_dir, stable_hash

if TYPE_CHECKING:
    from rec_gym.data.embeddings import TextEncoder

OBSERVATIONS = ("embedding", "profile", "embedding+profile")
# Bump when what a stored observation holds changes.
OBSERVATION_VERSION = 1
_MAPPED: dict[Path, np.ndarray] = {}
_MAPPED_LOCK = threading.Lock()


def observation_key(dataset: SessionDataset, rows: np.ndarray, observation: str, encoder: "str | TextEncoder") -> str:
    """What an observation matrix is made of, as a hash: its kind, encoder, item texts and the rows' histories."""
    history = np.ascontiguousarray(dataset.history[rows], dtype=np.int32)
    parts: list = [OBSERVATION_VERSION, observation, hashlib.sha256(history.tobytes()).hexdigest(), history.shape]
    if "embedding" in observation:
        used = np.unique(history[history >= 0])
        parts += [encoder_name(encoder), stable_hash([dataset.catalog.items[int(i)].text() for i in used], length=32)]
    if "profile" in observation:
        # A profile reads the whole catalog (its popularity median and tenth, its range of years).
        parts += [PROFILE_VERSION, stable_hash([(item.title, dict(item.attributes)) for item in dataset.catalog.items],
                                               length=32)]
    return stable_hash(*parts, length=24)


def observation_matrix(dataset: SessionDataset, rows: np.ndarray, observation: str = "embedding",
                       encoder: "str | TextEncoder" = "minilm", use_cache: bool = True, block: int = 4096) -> np.ndarray:
    """float32 ``(len(rows), d)``: the observation of each session row, read-only and memory-mapped when cached.

    Columns: the mean history-item embedding (``encoder``'s width), then the profile features, as
    ``observation`` asks. Only the items that occur in these histories are embedded.
    """
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation={observation!r} is not one of {OBSERVATIONS}")
    rows = np.asarray(rows, dtype=np.int64)
    if not use_cache:
        return np.concatenate(list(_blocks(dataset, rows, observation, encoder, block, use_cache=False)) or
                              [np.zeros((0, 0), dtype=np.float32)])
    name = f"{_safe(dataset.name)}-{observation.replace('+', '-')}-{observation_key(dataset, rows, observation, encoder)}.npy"
    path = cache_dir("observations") / name
    with _MAPPED_LOCK:
        if path in _MAPPED and path.exists():
            return _MAPPED[path]
    if not path.exists():
        from filelock import FileLock

        with FileLock(str(path) + ".lock"):
            if not path.exists():  # another process may have built it while this one waited
                _write(path, dataset, rows, observation, encoder, block)
    # A plain read-only ndarray over the mapping, so that rows and copies handed to agents are plain arrays.
    matrix = np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    with _MAPPED_LOCK:
        _MAPPED[path] = matrix
    return matrix


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60]


def _blocks(dataset: SessionDataset, rows: np.ndarray, observation: str, encoder: "str | TextEncoder", block: int,
            use_cache: bool = True):
    """float32 blocks of ``block`` rows of the observation matrix, in row order."""
    embeddings = profile_arrays = None
    if "embedding" in observation:
        history = dataset.history[rows]
        embeddings = item_embeddings(dataset.catalog, encoder, use_cache=use_cache, dataset=dataset.name,
                                     items=history[history >= 0])
        del history
    if "profile" in observation:
        profile_arrays = _CatalogArrays(dataset.catalog)
    for start in range(0, rows.size, block):
        history = dataset.history[rows[start:start + block]]
        parts = []
        if embeddings is not None:
            parts.append(mean_history_embedding(history, embeddings))
        if profile_arrays is not None:
            parts.append(np.clip(_profile_block(history, profile_arrays), 0.0, 1.0).astype(np.float32))
        yield np.hstack(parts) if len(parts) > 1 else parts[0]


def _write(path: Path, dataset: SessionDataset, rows: np.ndarray, observation: str, encoder: "str | TextEncoder",
           block: int) -> None:
    """Write the matrix block by block behind a ``.npy`` header: never more than one block in memory."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            header_at = fh.tell()
            width = None
            written = 0
            for part in _blocks(dataset, rows, observation, encoder, block):
                if width is None:
                    width = part.shape[1]
                    np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False,
                                                             "shape": (rows.size, width)})
                fh.write(np.ascontiguousarray(part, dtype="<f4").tobytes())
                written += part.shape[0]
            if width is None:  # no rows at all
                np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (0, 0)})
            assert written == rows.size and fh.tell() > header_at
            fh.flush()
            os.fsync(fh.fileno())
