"""The feedback table: the environment's whole view of the LLM.

An LLM call is a pure function of (model, template version, session, candidates, prompt variant), so
the environment never calls a model directly: it reads ``ranks[i, a]``, the 1-based rank the LLM gave
the target of session ``i`` (row ``i`` of the split) when prompted with column ``a``'s variant of the
prompt (for the hint envs, column ``a`` is action ``a``'s hint; column 0 = no hint). Entries are filled
lazily during a live run or eagerly by ``rec-gym precompute``; a filled table makes an environment step
a memory lookup.

Codes in ``ranks`` (int16): ``1..max_rank`` rank, ``0`` target not in the LLM's list, ``UNKNOWN`` (-1)
not computed, ``NO_RANKING`` (-2) the model replied and its reply ranks nothing (an empty or garbled
reply), which counts as the target not being ranked. Only answers are entries: a request that got no
answer (:class:`~rec_gym.llm.protocol.BackendUnavailable`) leaves its entry ``UNKNOWN``.

Each column is a prompt variant: a set of hints (:data:`HintSet`, sorted; ``()`` is the plain
prompt), carried by the prompt as :func:`~rec_gym.llm.prompts.combine_hints` writes it. Columns are
identified by a **variant key** (:func:`variant_key`), a content hash of the set, so a one-hint set and
the single hint share an entry whichever environment asked: the one-hint env's columns are ``()``
and each KB hint; the composition and team envs add columns for the sets they meet
(:meth:`FeedbackTable.add_columns`), in the same table file.

On disk a table is one ``.npz`` file (no pickle) holding ``ranks``, the dataset ``rows`` of the split,
the ``columns`` (JSON), a SHA-256 ``checksum`` of those and the ``provenance``: dataset and
fingerprint, split, knowledge-base hash, prompt-template version and backend name. A table is only
ever used with the provenance it was made for.

Concurrency: every save takes a lock file beside the table (``<table>.lock``), reads what is on disk,
keeps every entry either side knows, and replaces the file atomically; a fill first takes in what
other processes saved meanwhile. So any number of processes and threads filling one table end with
every entry any of them computed, and rarely compute one twice. Under the lock, temporary files that a
killed save left behind are removed. A file that cannot be read, or whose checksum does not match, is
moved aside as ``<table>.corrupt`` (with a warning) and the table starts again from what the response
cache and the backend give; rank codes outside the valid range are never used (they are computed again).

Copies: a table pickles and deep-copies by value (entries, columns in order, unsaved count) together
with its path, and makes its lock anew; nothing is written to copy it. A copy of an env therefore
holds the same answers and saves into the same file: the copy and the original are two tables of one
file, each saves what it computed, and a save keeps what the other saved. A table without a path is
copied by value only.

Exit: a table with a path keeps no answer in memory only when its process ends. Tables with unsaved
entries are saved at interpreter exit (``atexit``, before modules are torn down) and on ``SIGTERM``
when the program left ``SIGTERM`` at its default action: then, when the first table gains unsaved
entries, a handler is installed from the main thread that unwinds the program (``SystemExit``, so
locks are released and exit hooks run) with status ``128 + SIGTERM`` = 143, a shell's status for a
process ended by SIGTERM. A handler the program set itself is left alone. A table garbage-collected
before exit without ``save()`` (an env dropped without ``close()``), or whose folder was removed, is
not saved.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import re
import signal
import sys
import threading
import weakref
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from rec_gym.data.types import SessionDataset
from rec_gym.knowledge.base import KnowledgeBase
from rec_gym.llm.prompts import HINT_SET_FORMAT, TEMPLATE_VERSION, combine_hints
from rec_gym.llm.protocol import BackendUnavailable, LLMBackend, RankRequest, target_rank
from rec_gym.storage import atomic_path, cache_dir, stable_hash

UNKNOWN = -1
NO_RANKING = -2
LOCK_TIMEOUT_S = 600.0  # a save holds the lock for the time it takes to write one table


class ProvenanceMismatch(ValueError):
    """A stored table was made for another dataset, split, knowledge base, template or backend."""


class DamagedTable(ValueError):
    """A table file that cannot be read, or whose contents do not match their checksum."""


HintSet = tuple[str, ...]


def hint_set(hints: Iterable[str | None]) -> HintSet:
    """The canonical form of a set of hints: distinct, stripped, sorted; ``()`` for none."""
    return tuple(sorted({h.strip() for h in hints if h and h.strip()}))


def variant_key(hints: Iterable[str | None] = (), text: str | None = None) -> str:
    """The key of one prompt variant: a set of hints (order-free; empty = the plain prompt) or a free text.

    >>> variant_key(["b", "a"]) == variant_key(["a", "b"]) != variant_key(["a"])
    True
    """
    hints = hint_set(hints)
    canonical = {"hints": list(hints), "text": text}
    if len(hints) > 1:
        canonical["format"] = HINT_SET_FORMAT
    return stable_hash("variant-v1", canonical)


def kb_columns(kb: KnowledgeBase) -> list[HintSet]:
    """The columns of a one-hint env, one per action: no hint, then each KB hint in KB order."""
    return [()] + [(hint,) for hint in kb]


def set_columns(kb: KnowledgeBase, max_hints: int) -> list[HintSet]:
    """Every column a composition of up to ``max_hints`` hints can ask for: :func:`kb_columns`, then all
    sets of 2..``max_hints`` hints (``sum(comb(K, k) for k <= max_hints)`` columns in all)."""
    sets = [hint_set(c) for size in range(2, max_hints + 1) for c in itertools.combinations(list(kb), size)]
    return kb_columns(kb) + sets


def make_provenance(dataset: SessionDataset, split: str, kb: KnowledgeBase, backend_name: str) -> dict[str, Any]:
    return {
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "split": split,
        "kb_hash": kb.hash,
        "kb_size": len(kb),
        "template_version": TEMPLATE_VERSION,
        "backend": backend_name,
    }


def safe_name(text: str) -> str:
    """``text`` as one file-name component: no separators, no leading dots (``"../x"`` -> ``"x"``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).lstrip("._")
    return cleaned[:80] or "dataset"


def _checksum(ranks: np.ndarray, rows: np.ndarray, columns_json: str) -> str:
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(ranks, dtype="<i2"), np.ascontiguousarray(rows, dtype="<i8")):
        digest.update(array.tobytes())
    digest.update(columns_json.encode("utf-8"))
    return digest.hexdigest()


def _warn(message: str) -> None:
    print(f"rec_gym: {message}", file=sys.stderr, flush=True)


# Tables with a path and unsaved entries, saved at exit (see "Exit" in the module docstring).
_UNSAVED: "weakref.WeakSet[FeedbackTable]" = weakref.WeakSet()
_SIGTERM_CHECKED = False


def save_unsaved_tables() -> int:
    """Save every live table that has a path and unsaved entries; returns how many were saved.

    A table whose folder no longer exists (a temporary folder already removed) is skipped rather than
    made again. A table that cannot be saved (a read-only folder, a full disk) is named on stderr, and
    the others are still saved.
    """
    saved = 0
    for table in list(_UNSAVED):
        if table.path is None or not table._unsaved or not table.path.parent.is_dir():
            continue
        try:
            table.save()
            saved += 1
        except Exception as exc:  # noqa: BLE001  (one table's failure must not cost the others their answers)
            _warn(f"{table.path}: {table._unsaved} answered entries could not be saved ({type(exc).__name__}: {exc})")
    return saved


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _handle_sigterm() -> None:
    """Install :func:`_exit_on_sigterm` once per process, from the main thread, where SIGTERM has its default action."""
    global _SIGTERM_CHECKED
    if _SIGTERM_CHECKED or threading.current_thread() is not threading.main_thread():
        return
    _SIGTERM_CHECKED = True
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


atexit.register(save_unsaved_tables)


def _ranks_in_batches(backend: Any) -> bool:
    """Whether ``backend`` has a ``target_ranks`` that answers for its ``rank``: defined by the same class as
    ``rank`` or a subclass of it (a subclass that overrides only ``rank`` must be asked through ``rank``)."""
    def owner(attr: str) -> type | None:
        return next((c for c in type(backend).__mro__ if attr in c.__dict__), None)

    batch, single = owner("target_ranks"), owner("rank")
    return batch is not None and single is not None and issubclass(batch, single)


class FeedbackTable:
    """Ranks of the target for every (session of a split, prompt variant) pair.

    Args:
        provenance: what the ranks were computed from (see :func:`make_provenance`).
        rows: int64 ``(n,)``: the dataset rows of the split's sessions, in table order.
        columns: the hint set of each column (:func:`kb_columns` for a one-hint env: column ``a`` is
            action ``a``); distinct sets.
        ranks: int16 ``(n, len(columns))``; all ``UNKNOWN`` when omitted.
        path: where :meth:`save` writes; ``None`` keeps the table in memory only.
        max_rank: the largest valid rank (the largest candidate set); larger codes are never used.
    """

    def __init__(self, provenance: dict[str, Any], rows: np.ndarray, columns: Sequence[Iterable[str]],
                 ranks: np.ndarray | None = None, path: str | os.PathLike | None = None,
                 max_rank: int = 2 ** 15 - 1) -> None:
        self.provenance = dict(provenance)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.columns: list[HintSet] = [hint_set(c) for c in columns]
        self._column_of = {variant_key(c): j for j, c in enumerate(self.columns)}
        if len(self._column_of) != len(self.columns):
            raise ValueError("columns must be distinct hint sets")
        n = len(self.columns)
        self.ranks = (np.full((len(self.rows), n), UNKNOWN, dtype=np.int16) if ranks is None
                      else np.array(ranks, dtype=np.int16))
        if self.ranks.shape != (len(self.rows), n):
            raise ValueError(f"ranks has shape {self.ranks.shape}, expected {(len(self.rows), n)}")
        self.max_rank = int(max_rank)
        self.path = Path(path) if path is not None else None
        self._unsaved = 0
        self._seen_mtime: int | None = -1  # the file's mtime when this process last read it (None: absent; -1: never)
        self._mutex = threading.RLock()
        self.invalid_codes = self._drop_invalid(self.ranks)

    def __getstate__(self) -> dict[str, Any]:
        # See "Copies" in the module docstring.
        with self._mutex:
            state = {k: v for k, v in self.__dict__.items() if k != "_mutex"}
            state.update(ranks=self.ranks.copy(), columns=list(self.columns), _column_of=dict(self._column_of))
        state["_seen_mtime"] = -1  # the copy reads the file before its first fill
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._mutex = threading.RLock()
        self._count_unsaved(0)

    def _count_unsaved(self, answered: int) -> None:
        """Count ``answered`` more unsaved entries; a table with a path and unsaved entries joins the exit save."""
        self._unsaved += answered
        if self._unsaved and self.path is not None and self not in _UNSAVED:
            _UNSAVED.add(self)
            _handle_sigterm()

    @property
    def key(self) -> str:
        return stable_hash(self.provenance, self.rows.tolist())

    @staticmethod
    def default_path(provenance: dict[str, Any], rows: np.ndarray) -> Path:
        """Under ``$REC_GYM_CACHE/feedback``, named by provenance; never outside that folder."""
        name = f"{safe_name(provenance['dataset'])}-{safe_name(provenance['split'])}-" \
               f"{stable_hash(provenance, np.asarray(rows).tolist())}.npz"
        return cache_dir("feedback") / name

    # ------------------------------------------------------------------------------------------ files
    @classmethod
    def open(cls, provenance: dict[str, Any], rows: np.ndarray, columns: Sequence[Iterable[str]],
             path: str | os.PathLike | None = None, max_rank: int = 2 ** 15 - 1) -> "FeedbackTable":
        """The table stored at ``path`` (default: under the cache, named by provenance), or a new empty one.

        Its first columns are ``columns``, in order; columns the file holds beyond those follow. A
        damaged file there is moved aside as ``<name>.corrupt`` (saying so) and a new table starts.
        """
        path = Path(path) if path is not None else cls.default_path(provenance, rows)
        table = cls(provenance, rows, columns, path=path, max_rank=max_rank)
        table.refresh()
        return table

    def opened_at(self, path: str | os.PathLike) -> "FeedbackTable":
        """The table of the same provenance, sessions and columns stored at ``path`` (or a new empty one)."""
        return FeedbackTable.open(self.provenance, self.rows, self.columns, path=path, max_rank=self.max_rank)

    @classmethod
    def load(cls, path: str | os.PathLike, expected: dict[str, Any] | None = None,
             rows: np.ndarray | None = None, max_rank: int = 2 ** 15 - 1,
             legacy_columns: Sequence[Iterable[str]] | None = None) -> "FeedbackTable":
        """Read a table; with ``expected``, refuse one whose provenance or sessions differ.

        A table written by rec_gym 0.1 (no ``columns``, no checksum) is read with ``legacy_columns``
        (its columns were the one-hint env's actions) when their number matches. Raises
        :class:`DamagedTable` for a file that is not a readable table or fails its checksum.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                ranks, stored_rows = data["ranks"], data["rows"]
                provenance = json.loads(str(data["provenance"]))
                if "columns" in data.files or legacy_columns is None:
                    columns_json, checksum = str(data["columns"]), str(data["checksum"])
                else:
                    columns_json = json.dumps([list(hint_set(c)) for c in legacy_columns])
                    checksum = _checksum(ranks, stored_rows, columns_json)
                columns = json.loads(columns_json)
        except FileNotFoundError:
            raise
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            raise DamagedTable(f"{path}: not a readable rec_gym feedback table (truncated, damaged or another kind of "
                               f"file); move it aside (mv {path} {path}.corrupt) and fill it again with "
                               "`rec-gym precompute`") from None
        if ranks.ndim != 2 or stored_rows.ndim != 1 or ranks.shape[0] != len(stored_rows) or \
                not isinstance(columns, list) or len(columns) != ranks.shape[1]:
            raise DamagedTable(f"{path}: arrays of inconsistent shapes (ranks {ranks.shape}, rows {stored_rows.shape}); "
                               "move it aside and fill it again with `rec-gym precompute`")
        if checksum != _checksum(ranks, stored_rows, columns_json):
            raise DamagedTable(f"{path}: contents do not match their checksum (the file was damaged after it was "
                               "written); move it aside and fill it again with `rec-gym precompute`")
        if expected is not None:
            diff = {k: (provenance.get(k), v) for k, v in expected.items() if provenance.get(k) != v}
            if diff:
                lines = "; ".join(f"{k}: table has {a!r}, env needs {b!r}" for k, (a, b) in diff.items())
                raise ProvenanceMismatch(f"{path} was made for other settings ({lines}); run `rec-gym precompute` "
                                         "for these settings or pass the matching table")
        if rows is not None and not np.array_equal(stored_rows, rows):
            raise ProvenanceMismatch(f"{path} covers other sessions than the env's split; rebuild it with "
                                     "`rec-gym precompute`")
        table = cls(provenance, stored_rows, columns, ranks, path=path, max_rank=max_rank)
        if table.invalid_codes:
            _warn(f"{path}: {table.invalid_codes} rank code(s) outside -2..{max_rank} are ignored and will be "
                  "computed again")
        return table

    def _lock(self, path: Path) -> FileLock:
        return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)

    def _read_locked(self, path: Path) -> "FeedbackTable | None":
        """The table on disk at ``path`` (lock held): ``None`` when absent; a damaged one is moved aside."""
        for orphan in path.parent.glob(f".{path.name}.*.tmp"):
            orphan.unlink(missing_ok=True)  # a save killed mid-write; live saves hold the lock we hold
        if not path.exists():
            return None
        try:
            return FeedbackTable.load(path, expected=self.provenance, rows=self.rows, max_rank=self.max_rank,
                                      legacy_columns=self.columns)
        except DamagedTable as exc:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            _warn(f"{exc.args[0].split(';')[0]}; moved aside to {aside}; the table starts again (answers in the "
                  "response cache are reused)")
            return None

    def refresh(self) -> int:
        """Take in the entries other processes saved to this table's file since it was last read.

        Cheap when the file has not changed (one ``stat``). Returns the number of entries taken in.
        """
        if self.path is None:
            return 0
        try:
            mtime: int | None = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._seen_mtime:
            return 0
        with self._mutex, self._lock(self.path):
            other = self._read_locked(self.path)
            self._seen_mtime = self.path.stat().st_mtime_ns if self.path.exists() else None
            return self.merge_from(other) if other is not None else 0

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically under the table's lock, keeping every entry another process saved meanwhile."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("this table has no path; pass save(path=...)")
        with self._mutex, self._lock(path):
            other = self._read_locked(path)
            if other is not None:
                self.merge_from(other)
            columns_json = json.dumps([list(c) for c in self.columns])
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, ranks=self.ranks, rows=self.rows, columns=np.array(columns_json),
                             checksum=np.array(_checksum(self.ranks, self.rows, columns_json)),
                             provenance=np.array(json.dumps(self.provenance, sort_keys=True)))
            self._seen_mtime = path.stat().st_mtime_ns
        self.path = path
        self._unsaved = 0
        _UNSAVED.discard(self)
        return path

    def column(self, hints: Iterable[str | None]) -> int | None:
        """The column of a hint set, or ``None`` when the table has none for it."""
        return self._column_of.get(variant_key(hints))

    def add_columns(self, sets: Iterable[Iterable[str | None]]) -> list[int]:
        """The columns of these hint sets, adding an all-``UNKNOWN`` column for each set not yet here."""
        with self._mutex:
            out, new = [], []
            for hints in sets:
                key = variant_key(hints)
                if key not in self._column_of:
                    self._column_of[key] = len(self.columns)
                    self.columns.append(hint_set(hints))
                    new.append(key)
                out.append(self._column_of[key])
            if new:
                grown = np.full((len(self.rows), len(self.columns)), UNKNOWN, dtype=np.int16)
                grown[:, :self.ranks.shape[1]] = self.ranks
                self.ranks = grown
            return out

    def merge_from(self, other: "FeedbackTable") -> int:
        """Copy every entry ``other`` knows and this table does not; returns how many.

        Columns are matched by hint set; sets only ``other`` has are added. Same provenance and rows required.
        """
        if other.provenance != self.provenance or not np.array_equal(other.rows, self.rows):
            raise ProvenanceMismatch("cannot merge feedback tables of different provenance or sessions")
        with self._mutex:
            dst = np.array(self.add_columns(other.columns), dtype=np.int64)
            theirs = other.ranks
            block = self.ranks[:, dst]
            fill = (block == UNKNOWN) & (theirs != UNKNOWN)
            block[fill] = theirs[fill]
            self.ranks[:, dst] = block
        return int(fill.sum())

    def _drop_invalid(self, ranks: np.ndarray) -> int:
        """Set codes outside ``NO_RANKING..max_rank`` to ``UNKNOWN`` (computed again, never used)."""
        bad = (ranks < NO_RANKING) | (ranks > self.max_rank)
        ranks[bad] = UNKNOWN
        return int(bad.sum())

    # ------------------------------------------------------------------------------------------ contents
    @property
    def n_known(self) -> int:
        return int(np.count_nonzero(self.ranks != UNKNOWN))

    @property
    def complete(self) -> bool:
        return not np.any(self.ranks == UNKNOWN)

    def fill(self, dataset: SessionDataset, backend: LLMBackend, table_rows: Sequence[int] | None = None,
             columns: Sequence[int] | None = None, progress: bool = False, sessions_per_batch: int = 8,
             autosave_every: int = 0) -> int:
        """Compute the unknown entries of ``table_rows`` x ``columns`` (default: all) with ``backend``.

        Entries other processes saved meanwhile are taken in first. The requests of one session (all its
        missing hints) go to the backend together, so backends that share the session prefix across
        hints can. Returns the number of entries filled. When the backend raises
        :class:`~rec_gym.llm.protocol.BackendUnavailable`, the answers it did get are kept (and saved,
        for a table with a path) and the error goes on: nothing is written for the others.
        """
        self.refresh()
        table_rows = np.arange(len(self.rows)) if table_rows is None else np.asarray(table_rows)
        columns = np.arange(self.ranks.shape[1]) if columns is None else np.asarray(columns)
        todo = [(i, columns[self.ranks[i, columns] == UNKNOWN]) for i in table_rows]
        todo = [(i, a) for i, a in todo if a.size]
        filled = 0
        bar = tqdm(total=sum(a.size for _, a in todo), desc="feedback (session, hint) pairs", unit="pair",
                   disable=not progress, dynamic_ncols=True)
        if todo and _ranks_in_batches(backend):
            # A backend that scores whole batches from the dataset's arrays (the simulated ranker) is
            # asked for the union of missing columns, a few thousand sessions at a time.
            try:
                return self._fill_batched(dataset, backend, todo, bar, autosave_every)
            finally:
                bar.close()
        try:
            for start in range(0, len(todo), sessions_per_batch):
                batch = todo[start:start + sessions_per_batch]
                requests, where = [], []
                for i, acts in batch:
                    base = self.request(dataset, int(i))
                    for a in acts:
                        requests.append(base.with_hint(combine_hints(self.columns[int(a)])))
                        where.append((int(i), int(a)))
                unsettled: frozenset[int] = frozenset()
                try:
                    rankings = backend.rank(requests)
                except BackendUnavailable as exc:
                    rankings, unsettled = exc.rankings, exc.unsettled
                    error = exc
                if len(rankings) != len(requests):
                    raise RuntimeError(f"backend {backend.name!r} returned {len(rankings)} rankings for "
                                       f"{len(requests)} requests")
                with self._mutex:
                    for k, ((i, a), ranking) in enumerate(zip(where, rankings)):
                        if k not in unsettled:
                            row = self.rows[i]
                            self.ranks[i, a] = (NO_RANKING if ranking is None
                                                else target_rank(ranking, int(dataset.target_pos[row])))
                answered = len(requests) - len(unsettled)
                filled += answered
                self._count_unsaved(answered)
                bar.update(answered)
                if unsettled:
                    if self.path is not None and self._unsaved:
                        self.save()
                    raise error
                if autosave_every and self._unsaved >= autosave_every and self.path is not None:
                    self.save()
        finally:
            bar.close()
        return filled

    def _fill_batched(self, dataset: SessionDataset, backend: Any, todo: list[tuple[int, np.ndarray]], bar: Any,
                      autosave_every: int, chunk: int = 4096) -> int:
        filled = 0
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            table_rows = np.array([i for i, _ in part], dtype=np.int64)
            columns = np.unique(np.concatenate([a for _, a in part]))
            hints = [combine_hints(self.columns[int(a)]) for a in columns]
            ranks = np.asarray(backend.target_ranks(dataset, self.rows[table_rows], hints))
            if ranks.shape != (table_rows.size, columns.size):
                raise RuntimeError(f"backend {backend.name!r} returned target ranks of shape {ranks.shape} for "
                                   f"{table_rows.size} sessions x {columns.size} hints")
            with self._mutex:
                block = self.ranks[np.ix_(table_rows, columns)]
                missing = block == UNKNOWN
                block[missing] = ranks[missing]
                self.ranks[np.ix_(table_rows, columns)] = block
            answered = int(missing.sum())
            filled += answered
            self._count_unsaved(answered)
            bar.update(answered)
            if autosave_every and self._unsaved >= autosave_every and self.path is not None:
                self.save()
        return filled

    def request(self, dataset: SessionDataset, i: int) -> RankRequest:
        """The no-hint request of table row ``i``."""
        history, candidates = dataset.session_items(int(self.rows[i]))
        return RankRequest(tuple(history), tuple(candidates), None, dataset.domain)

    def metric_ranks(self) -> np.ndarray:
        """``ranks`` with ``NO_RANKING`` read as 0 (not ranked); ``UNKNOWN`` stays -1."""
        return np.where(self.ranks == NO_RANKING, 0, self.ranks).astype(np.int16)
