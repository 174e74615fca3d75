"""Session observations built once per machine and memory-mapped by every env that reads them.

An environment's observation of a session is the mean embedding of its history items, its profile
(:mod:`rec_gym.data.profile`), or both side by side. :func:`observation_matrix` computes the matrix
of one split in float32, a block of sessions at a time, straight into a ``.npy`` file under
``$REC_GYM_CACHE/observations`` named by what it is made of (observation kind, encoder, the item
texts, the sessions' histories). Every env copy and every process then maps that file read-only, so
eight training envs and a validation env hold one matrix between them, in the page cache. A file lock
makes a second process wait for the first build instead of repeating it; a build that is killed
leaves no matrix behind, and the temporary file it leaves is removed by the next build.

Each matrix has a checksum beside it (``<name>.npy.crc32``, the CRC-32 of the whole ``.npy`` file,
computed from the bytes as they are written; a CRC detects every error burst up to 32 bits, so every
flipped byte, at twice the speed of SHA-256: the cache is this machine's own, nobody forges it). A process checks it once, the first time it maps the
file; a file that fails it (a flipped byte, a truncated file) is reported once on stderr and built again.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from rec_gym.data.embeddings import encoder_name, item_embeddings, mean_history_embedding
from rec_gym.data.profile import PROFILE_VERSION, _CatalogArrays, _profile_block
from rec_gym.data.types import SessionDataset
from rec_gym.storage import atomic_path, cache_dir, stable_hash, write_bytes_durably

if TYPE_CHECKING:
    from rec_gym.data.embeddings import TextEncoder

OBSERVATIONS = ("embedding", "profile", "embedding+profile")
# Bump when what a stored observation holds changes.
OBSERVATION_VERSION = 1
CHECKSUM_SUFFIX = ".crc32"
_READ_CHUNK = 1 << 24
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
    if observation_file_damage(path, rows.size) is not None:
        from filelock import FileLock

        _remove_abandoned_builds(path.parent)
        with FileLock(str(path) + ".lock"):
            # Another process may have built it while this one waited.
            damage = observation_file_damage(path, rows.size)
            if damage is not None:
                if damage != "missing":
                    print(f"rec_gym: {path} {damage}; it is a cache, so it is built again", file=sys.stderr,
                          flush=True)
                _write(path, dataset, rows, observation, encoder, block)
    # A plain read-only ndarray over the mapping, so that rows and copies handed to agents are plain arrays.
    matrix = np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    with _MAPPED_LOCK:
        _MAPPED[path] = matrix
    return matrix


def observation_file_damage(path: Path, n_rows: int) -> str | None:
    """``None`` when ``path`` holds an intact matrix of ``n_rows`` rows, ``"missing"`` when there is none,
    else what is wrong with it. Reads the whole file once (CRC-32: about 2 GB/s on an idle core)."""
    checksum = Path(str(path) + CHECKSUM_SUFFIX)
    if not path.exists():
        return "missing"
    if not checksum.exists():
        return f"has no checksum file {checksum.name}"
    crc, buffer = 0, bytearray(_READ_CHUNK)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buffer):
            crc = zlib.crc32(memoryview(buffer)[:n], crc)
    if f"{crc:08x}" != checksum.read_text(encoding="ascii", errors="replace").strip():
        return "fails its checksum (the file was altered or damaged)"
    with open(path, "rb") as fh:
        read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(np.lib.format.read_magic(fh),
                                                                        np.lib.format.read_array_header_2_0)
        shape = read_header(fh)[0]
    if len(shape) != 2 or shape[0] != n_rows:
        return f"holds shape {shape}, not ({n_rows}, d)"
    return None


def _remove_abandoned_builds(folder: Path) -> None:
    """Delete the temporary files of builds that were killed: those whose matrix's lock nobody holds."""
    from filelock import FileLock, Timeout

    for tmp in folder.glob(".*.npy.*.tmp"):
        target = folder / (tmp.name[1:].split(".npy.", 1)[0] + ".npy")
        try:
            with FileLock(str(target) + ".lock", timeout=0):
                tmp.unlink(missing_ok=True)
        except Timeout:
            continue  # a build in progress


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
    """Write the matrix block by block behind a ``.npy`` header: never more than one block in memory.

    The checksum is computed from the bytes as they are written and lands before the matrix's rename,
    so a matrix in place always has its checksum beside it.
    """
    crc = 0

    def put(fh: BinaryIO, data: bytes) -> None:
        nonlocal crc
        fh.write(data)
        crc = zlib.crc32(data, crc)

    def header(shape: tuple[int, int]) -> bytes:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
        return buffer.getvalue()

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            width = None
            written = 0
            for part in _blocks(dataset, rows, observation, encoder, block):
                if width is None:
                    width = part.shape[1]
                    put(fh, header((rows.size, width)))
                put(fh, np.ascontiguousarray(part, dtype="<f4").tobytes())
                written += part.shape[0]
            if width is None:  # no rows at all
                put(fh, header((0, 0)))
            assert written == rows.size
            fh.flush()
            os.fsync(fh.fileno())
        write_bytes_durably(str(path) + CHECKSUM_SUFFIX, f"{crc:08x}".encode("ascii"))
