"""A persistent cache of backend answers: every ranking an LLM produced, computed once.

:class:`CachedBackend` wraps any backend and implements the same protocol. It looks every request up
in an SQLite file (WAL mode) and forwards only the misses to the backend, in batches that keep the
hints of one session together (so a backend can share the session prefix); each finished batch is
committed before the next starts. A run killed at any point therefore keeps every finished batch, and
a rerun computes exactly the requests that were not finished.

Key of one request (:func:`request_key`): the backend ``name`` (model id, revision and settings),
``TEMPLATE_VERSION``, the SHA-256 of the rendered prompt, the candidates' item ids, the hint and the
domain. Nothing else (no API key, no path, no time) goes in, so the same request has the same key on
every machine. Values are the ranking as little-endian uint16 candidate positions, or NULL for "no
ranking" (the model replied and its reply ranks nothing). Only answers are stored: when the backend
raises :class:`~rec_gym.llm.protocol.BackendUnavailable`, the answers it carries are stored and the
requests that got none are not, and the error goes on to the caller.

Stored rankings are checked when read: a position outside the request's candidate set or a position
listed twice (a damaged file) is never returned; the request is computed again and its row replaced.
A file that SQLite cannot read raises :class:`DamagedCache`, naming the file and the fix.

Generated text (the :class:`~rec_gym.llm.protocol.WriterBackend` protocol: reflections, hints,
preference texts) is cached the same way in a second table, keyed by :func:`generation_key`: the
backend name, the request's purpose and template version, the whole conversation, the token budget,
the temperature and the sample index. Only replies that arrived are stored.

Schema (``PRAGMA user_version = 1``; the ``generations`` table is created on first use)::

    backends(id INTEGER PRIMARY KEY, name TEXT UNIQUE)
    responses(key TEXT PRIMARY KEY, backend_id INTEGER, template_version TEXT, ranking BLOB)
    generations(key TEXT PRIMARY KEY, backend_id INTEGER, template_version TEXT, text TEXT)
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from rec_gym.llm.prompts import TEMPLATE_VERSION, render_prompt
from rec_gym.llm.protocol import BackendUnavailable, GenerateRequest, LLMBackend, RankRequest, Ranking, can_write
from rec_gym.storage import cache_dir, connect_wal, is_lock_error, sqlite_transaction, stable_hash

SCHEMA_VERSION = 1
BUSY_TIMEOUT = 60.0  # seconds a connection waits for another process's write to finish
_CHUNK = 500  # keys per SELECT: below SQLite's bound-parameter limit everywhere


class DamagedCache(ValueError):
    """The response cache file cannot be read as an SQLite database."""


class BusyCache(TimeoutError):
    """Another process held the response cache for longer than the busy timeout."""


def _damaged(path: Path, exc: BaseException) -> DamagedCache | BusyCache:
    """The error to raise for an SQLite error on ``path``: busy (another process writes) or damaged."""
    if is_lock_error(exc):
        return BusyCache(f"{path} stayed locked by another process for {BUSY_TIMEOUT:.0f} s ({exc}); wait for the "
                         "other run to finish, or pass another response cache path")
    return DamagedCache(f"{path} is damaged ({exc}); it only saves LLM calls, so move it aside "
                        f"(mv {path} {path}.corrupt, with its -wal and -shm files) and run again, or pass another "
                        "response cache path")


def valid_ranking(ranking: Ranking, n_candidates: int) -> bool:
    """``None`` ("no ranking"), or distinct positions in ``0..n_candidates - 1``."""
    return ranking is None or (all(0 <= p < n_candidates for p in ranking) and len(set(ranking)) == len(ranking))


def default_cache_path() -> Path:
    """``$REC_GYM_CACHE/responses/responses.sqlite``."""
    return cache_dir("responses") / "responses.sqlite"


def request_key(backend_name: str, request: RankRequest) -> str:
    """The cache key of ``request`` answered by the backend called ``backend_name`` (32 hex characters)."""
    prompt_sha = hashlib.sha256(render_prompt(request).encode("utf-8")).hexdigest()
    return stable_hash(backend_name, TEMPLATE_VERSION, prompt_sha, [c.item_id for c in request.candidates],
                       request.hint, request.domain, length=32)


def generation_key(backend_name: str, request: GenerateRequest, writer_version: str = "") -> str:
    """The cache key of a generation ``request`` answered by ``backend_name`` (32 hex characters).

    ``writer_version``: the version of the code that writes for this purpose, where the backend has one
    (the simulated writers), so that replies of an earlier version are never served for a later one.
    """
    versioned = [writer_version] if writer_version else []
    return stable_hash(backend_name, "generate", request.purpose, request.template_version, [list(m) for m in request.messages],
                       request.max_new_tokens, repr(float(request.temperature)), request.sample, *versioned, length=32)


def _encode(ranking: Ranking) -> bytes | None:
    return None if ranking is None else np.asarray(ranking, dtype="<u2").tobytes()


def _decode(blob: bytes | None) -> Ranking:
    return None if blob is None else np.frombuffer(blob, dtype="<u2").astype(int).tolist()


class ResponseCache:
    """The SQLite store under :class:`CachedBackend`: ``key -> ranking`` for one or more backends.

    Several processes may read and write one file at once (WAL journal, 60 s busy timeout); a key
    written twice keeps its first value.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None
        self._backend_ids: dict[str, int] = {}

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = connect_wal(self.path, timeout=BUSY_TIMEOUT)
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None
            try:
                # NORMAL in WAL mode: a killed process loses nothing committed (only a power cut could).
                conn.execute("PRAGMA synchronous=NORMAL")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise ValueError(f"{self.path}: response cache schema {version}, this rec_gym reads {SCHEMA_VERSION}; "
                                     "delete the file or pass another path")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("CREATE TABLE IF NOT EXISTS backends (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)")
                conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, backend_id INTEGER NOT NULL, "
                             "template_version TEXT NOT NULL, ranking BLOB) WITHOUT ROWID")
                conn.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, backend_id INTEGER NOT NULL, "
                             "template_version TEXT NOT NULL, text TEXT NOT NULL) WITHOUT ROWID")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise _damaged(self.path, exc) from None
            self._conn = conn
        return self._conn

    def backend_id(self, name: str) -> int:
        if name not in self._backend_ids:
            self.conn.execute("INSERT OR IGNORE INTO backends (name) VALUES (?)", (name,))
            self._backend_ids[name] = self.conn.execute("SELECT id FROM backends WHERE name = ?", (name,)).fetchone()[0]
        return self._backend_ids[name]

    def _select(self, table: str, column: str, keys: Iterable[str]) -> list[tuple[str, Any]]:
        """``(key, column value)`` of those ``keys`` present in ``table``, asked a chunk of keys at a time."""
        keys = list(dict.fromkeys(keys))
        rows: list[tuple[str, Any]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            try:
                rows.extend(self.conn.execute(f"SELECT key, {column} FROM {table} WHERE key IN ({marks})", chunk))
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None
        return rows

    def get_many(self, keys: Iterable[str]) -> dict[str, Ranking]:
        """The stored rankings of those ``keys`` that are present."""
        return {key: _decode(blob) for key, blob in self._select("responses", "ranking", keys)}

    def put_many(self, backend_name: str, items: Sequence[tuple[str, Ranking]], replace: bool = False) -> None:
        """Store ``(key, ranking)`` pairs in one transaction (committed when this returns).

        A key already present keeps its first value, unless ``replace`` (used for rows found damaged).
        """
        if not items:
            return
        try:
            backend_id = self.backend_id(backend_name)
            rows = [(key, backend_id, TEMPLATE_VERSION, _encode(ranking)) for key, ranking in items]
            with sqlite_transaction(self.conn):
                self.conn.executemany(f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO responses "
                                      "(key, backend_id, template_version, ranking) VALUES (?, ?, ?, ?)", rows)
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None

    def get_texts(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored generated texts of those ``keys`` that are present."""
        return dict(self._select("generations", "text", keys))

    def put_texts(self, backend_name: str, items: Sequence[tuple[str, str, str]]) -> None:
        """Store ``(key, template version, text)`` triples in one transaction; a present key keeps its text."""
        if not items:
            return
        try:
            backend_id = self.backend_id(backend_name)
            with sqlite_transaction(self.conn):
                self.conn.executemany("INSERT OR IGNORE INTO generations (key, backend_id, template_version, text) "
                                      "VALUES (?, ?, ?, ?)", [(k, backend_id, v, t) for k, v, t in items])
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None

    def n_texts(self) -> int:
        """How many generated texts are stored."""
        return int(self.conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def dump(self) -> list[tuple[str, str, str, Ranking]]:
        """Every row as ``(key, backend name, template version, ranking)``, sorted by key."""
        rows = self.conn.execute("SELECT r.key, b.name, r.template_version, r.ranking FROM responses r "
                                 "JOIN backends b ON b.id = r.backend_id ORDER BY r.key")
        return [(k, name, version, _decode(blob)) for k, name, version, blob in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        # A connection cannot cross processes; a copy reopens the file on first use.
        return {"path": self.path, "_conn": None, "_backend_ids": {}}


def _missing(keys: Sequence[str], found: dict[str, Any]) -> list[int]:
    """The index of the first request of every key not in ``found``, in request order."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key not in found:
            first.setdefault(key, i)
    return list(first.values())


class CachedBackend:
    """``backend`` behind a persistent :class:`ResponseCache`; the same protocol and the same ``name``.

    Args:
        backend: any object with ``name`` and ``rank(requests)``.
        path: the SQLite file (default :func:`default_cache_path`); shared by all backends.
        batch_size: most requests forwarded to ``backend`` per call (and per commit). A session's hints
            stay in one batch when they fit.

    Attributes:
        hits, misses: requests answered from the cache / computed by the backend, since creation.
        damaged: stored rankings found invalid (and computed again), since creation.
    """

    def __init__(self, backend: LLMBackend, path: str | os.PathLike | None = None, batch_size: int = 64) -> None:
        if not isinstance(backend, LLMBackend):
            raise TypeError(f"CachedBackend needs an object with `name` and `rank(requests)`, got {backend!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.name = backend.name
        self.store = ResponseCache(path)
        self.batch_size = int(batch_size)
        self.hits = 0
        self.misses = 0
        self.damaged = 0

    def __getattr__(self, attr: str) -> Any:
        # Everything else (generate, failures, ...) is the wrapped backend's.
        if attr == "backend":
            raise AttributeError(attr)
        return getattr(self.backend, attr)

    def __repr__(self) -> str:
        return f"CachedBackend({self.backend!r}, path={str(self.store.path)!r})"

    def _batches(self, requests: Sequence[RankRequest], indices: list[int]) -> list[list[int]]:
        """``indices`` packed into batches of at most ``batch_size``, whole sessions where they fit."""
        sessions: "OrderedDict[tuple, list[int]]" = OrderedDict()
        for i in indices:
            r = requests[i]
            sessions.setdefault((r.domain, tuple(x.item_id for x in r.history), tuple(x.item_id for x in r.candidates)),
                                []).append(i)
        batches: list[list[int]] = []
        current: list[int] = []
        for members in sessions.values():
            for start in range(0, len(members), self.batch_size):
                part = members[start:start + self.batch_size]
                if current and len(current) + len(part) > self.batch_size:
                    batches.append(current)
                    current = []
                current.extend(part)
        if current:
            batches.append(current)
        return batches

    def _settled(self, call: Any, batch: list[Any], what: str) -> tuple[list[Any], frozenset[int], Any]:
        """(answers, indices of the requests that got none, the error) of one backend call over ``batch``."""
        try:
            answers, unsettled, error = call(batch), frozenset(), None
        except BackendUnavailable as exc:
            answers, unsettled, error = exc.rankings, exc.unsettled, exc
        if len(answers) != len(batch):
            raise RuntimeError(f"backend {self.name!r} returned {len(answers)} {what} for {len(batch)} requests")
        return list(answers), frozenset(unsettled), error

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """Cached rankings where present; the rest from the backend, stored batch by batch.

        Raises :class:`~rec_gym.llm.protocol.BackendUnavailable` for the whole call at the first batch with
        requests that got no answer, after storing every answer; its ``rankings`` hold all answers known.
        """
        keys = [request_key(self.name, r) for r in requests]
        found = self.store.get_many(keys)
        damaged = {k for i, k in enumerate(keys) if k in found and not valid_ranking(found[k], len(requests[i].candidates))}
        for key in damaged:
            del found[key]
        self.damaged += len(damaged)
        self.hits += sum(1 for k in keys if k in found)
        for batch in self._batches(requests, _missing(keys, found)):
            rankings, unsettled, error = self._settled(self.backend.rank, [requests[i] for i in batch], "rankings")
            answers = [(keys[i], ranking) for j, (i, ranking) in enumerate(zip(batch, rankings)) if j not in unsettled]
            self.store.put_many(self.name, [a for a in answers if a[0] not in damaged])
            self.store.put_many(self.name, [a for a in answers if a[0] in damaged], replace=True)
            self.misses += len(answers)
            found.update(answers)
            if unsettled:
                missing = {i for i, key in enumerate(keys) if key not in found}
                raise BackendUnavailable(str(error), [found.get(key) for key in keys], missing, error.causes)
        return [found[key] for key in keys]

    @property
    def writes(self) -> bool:
        """Whether the wrapped backend writes text (see :func:`~rec_gym.llm.protocol.can_write`)."""
        return can_write(self.backend)

    def write(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Cached replies where present; the rest from the backend's ``write``, stored batch by batch.

        Raises :class:`~rec_gym.llm.protocol.BackendUnavailable` (after storing every reply that arrived)
        when some request got none; its ``rankings`` hold the replies known, ``None`` for the others.
        """
        if not can_write(self.backend):
            raise TypeError(f"backend {self.name!r} does not write text; use simulated, hf:<model> or openai:<model>")
        versions = getattr(self.backend, "writer_version", None)
        keys = [generation_key(self.name, r, versions(r.purpose) if versions else "") for r in requests]
        found = self.store.get_texts(keys)
        self.hits += sum(1 for k in keys if k in found)
        pending = _missing(keys, found)
        for start in range(0, len(pending), self.batch_size):
            batch = pending[start:start + self.batch_size]
            texts, unsettled, error = self._settled(self.backend.write, [requests[i] for i in batch], "replies")  # type: ignore[attr-defined]
            answers = [(keys[i], requests[i].template_version, str(text))
                       for j, (i, text) in enumerate(zip(batch, texts)) if j not in unsettled]
            self.store.put_texts(self.name, answers)
            self.misses += len(answers)
            found.update((k, t) for k, _, t in answers)
            if unsettled:
                missing = {i for i, key in enumerate(keys) if key not in found}
                raise BackendUnavailable(str(error), [found.get(key) for key in keys], missing, error.causes)
        return [found[key] for key in keys]

    def close(self) -> None:
        self.store.close()
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()
