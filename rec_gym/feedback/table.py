"""The feedback table: the environment's whole view of the LLM.

An LLM call is a pure function of (model, template version, session, candidates, hint), so the
environment never calls a model directly: it reads ``ranks[i, a]``, the 1-based rank the LLM gave
the target of session ``i`` (row ``i`` of the split) when prompted with action ``a``'s hint (column 0
= no hint). Entries are filled lazily during a live run or eagerly by ``rec-gym precompute``; a
filled table makes an environment step a memory lookup.

Codes in ``ranks`` (int16): ``1..n`` rank, ``0`` target not in the LLM's list, ``UNKNOWN`` (-1) not
computed yet, ``NO_RANKING`` (-2) the backend returned nothing usable (an empty or garbled reply),
which counts as the target not being ranked.

On disk a table is one ``.npz`` file (no pickle) holding ``ranks``, the dataset ``rows`` of the split
and its ``provenance``: dataset and fingerprint, split, knowledge-base hash, prompt-template
version and backend name. A table is only ever used with the provenance it was made for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from rec_gym.data.types import SessionDataset
from rec_gym.knowledge.base import KnowledgeBase
from rec_gym.llm.prompts import TEMPLATE_VERSION
from rec_gym.llm.protocol import LLMBackend, RankRequest, target_rank
from rec_gym.storage import atomic_path, cache_dir, stable_hash

UNKNOWN = -1
NO_RANKING = -2


class ProvenanceMismatch(ValueError):
    """A stored table was made for another dataset, split, knowledge base, template or backend."""


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


class FeedbackTable:
    """Ranks of the target for every (session of a split, action) pair.

    Args:
        provenance: what the ranks were computed from (see :func:`make_provenance`).
        rows: int64 ``(n,)``: the dataset rows of the split's sessions, in table order.
        n_actions: ``K + 1`` (column 0 is "no hint").
        ranks: int16 ``(n, K + 1)``; all ``UNKNOWN`` when omitted.
        path: where :meth:`save` writes; ``None`` keeps the table in memory only.
    """

    def __init__(self, provenance: dict[str, Any], rows: np.ndarray, n_actions: int,
                 ranks: np.ndarray | None = None, path: str | os.PathLike | None = None) -> None:
        self.provenance = dict(provenance)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.ranks = (np.full((len(self.rows), n_actions), UNKNOWN, dtype=np.int16) if ranks is None
                      else np.asarray(ranks, dtype=np.int16))
        if self.ranks.shape != (len(self.rows), n_actions):
            raise ValueError(f"ranks has shape {self.ranks.shape}, expected {(len(self.rows), n_actions)}")
        self.path = Path(path) if path is not None else None
        self._unsaved = 0

    @property
    def key(self) -> str:
        return stable_hash(self.provenance, self.rows.tolist())

    @staticmethod
    def default_path(provenance: dict[str, Any], rows: np.ndarray) -> Path:
        return cache_dir("feedback") / f"{provenance['dataset']}-{provenance['split']}-{stable_hash(provenance, np.asarray(rows).tolist())}.npz"

    @classmethod
    def open(cls, provenance: dict[str, Any], rows: np.ndarray, n_actions: int,
             path: str | os.PathLike | None = None) -> "FeedbackTable":
        """The table stored at ``path`` (default: under the cache, named by provenance), or a new empty one."""
        path = Path(path) if path is not None else cls.default_path(provenance, rows)
        if path.exists():
            return cls.load(path, expected=provenance, rows=rows)
        return cls(provenance, rows, n_actions, path=path)

    @classmethod
    def load(cls, path: str | os.PathLike, expected: dict[str, Any] | None = None,
             rows: np.ndarray | None = None) -> "FeedbackTable":
        """Read a table; with ``expected``, refuse one whose provenance or sessions differ."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                ranks, stored_rows = data["ranks"], data["rows"]
                provenance = json.loads(str(data["provenance"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a rec_gym feedback table ({exc}); delete it or point to another file") from None
        if expected is not None:
            diff = {k: (provenance.get(k), v) for k, v in expected.items() if provenance.get(k) != v}
            if diff:
                lines = "; ".join(f"{k}: table has {a!r}, env needs {b!r}" for k, (a, b) in diff.items())
                raise ProvenanceMismatch(f"{path} was made for other settings ({lines}); run `rec-gym precompute` "
                                         "for these settings or pass the matching table")
        if rows is not None and not np.array_equal(stored_rows, rows):
            raise ProvenanceMismatch(f"{path} covers other sessions than the env's split; rebuild it with "
                                     "`rec-gym precompute`")
        return cls(provenance, stored_rows, ranks.shape[1], ranks, path=path)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically, keeping entries another process saved to the same file meanwhile."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("this table has no path; pass save(path=...)")
        if path.exists():
            try:
                other = FeedbackTable.load(path, expected=self.provenance, rows=self.rows)
                self.merge_from(other)
            except (ProvenanceMismatch, ValueError):
                pass  # A different or broken file at this path is replaced, never mixed in.
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, ranks=self.ranks, rows=self.rows,
                         provenance=np.array(json.dumps(self.provenance, sort_keys=True)))
        self.path = path
        self._unsaved = 0
        return path

    def merge_from(self, other: "FeedbackTable") -> None:
        """Copy every entry ``other`` knows and this table does not (same provenance and rows required)."""
        if other.provenance != self.provenance or not np.array_equal(other.rows, self.rows):
            raise ProvenanceMismatch("cannot merge feedback tables of different provenance or sessions")
        fill = (self.ranks == UNKNOWN) & (other.ranks != UNKNOWN)
        self.ranks[fill] = other.ranks[fill]

    @property
    def n_known(self) -> int:
        return int(np.count_nonzero(self.ranks != UNKNOWN))

    @property
    def complete(self) -> bool:
        return not np.any(self.ranks == UNKNOWN)

    def fill(self, dataset: SessionDataset, kb: KnowledgeBase, backend: LLMBackend,
             table_rows: Sequence[int] | None = None, actions: Sequence[int] | None = None,
             progress: bool = False, sessions_per_batch: int = 8, autosave_every: int = 0) -> int:
        """Compute the unknown entries of ``table_rows`` x ``actions`` (default: all) with ``backend``.

        The requests of one session (all its missing hints) go to the backend together, so backends
        that share the session prefix across hints can. Returns the number of entries filled.
        """
        table_rows = np.arange(len(self.rows)) if table_rows is None else np.asarray(table_rows)
        actions = np.arange(self.ranks.shape[1]) if actions is None else np.asarray(actions)
        todo = [(i, actions[self.ranks[i, actions] == UNKNOWN]) for i in table_rows]
        todo = [(i, a) for i, a in todo if a.size]
        filled = 0
        bar = tqdm(total=sum(a.size for _, a in todo), desc="feedback (session, hint) pairs", unit="pair",
                   disable=not progress, dynamic_ncols=True)
        for start in range(0, len(todo), sessions_per_batch):
            batch = todo[start:start + sessions_per_batch]
            requests, where = [], []
            for i, acts in batch:
                base = self.request(dataset, int(i))
                for a in acts:
                    requests.append(base.with_hint(kb.hint_for_action(int(a))))
                    where.append((int(i), int(a)))
            rankings = backend.rank(requests)
            if len(rankings) != len(requests):
                raise RuntimeError(f"backend {backend.name!r} returned {len(rankings)} rankings for {len(requests)} requests")
            for (i, a), ranking in zip(where, rankings):
                row = self.rows[i]
                self.ranks[i, a] = NO_RANKING if ranking is None else target_rank(ranking, int(dataset.target_pos[row]))
            filled += len(requests)
            self._unsaved += len(requests)
            bar.update(len(requests))
            if autosave_every and self._unsaved >= autosave_every and self.path is not None:
                self.save()
        bar.close()
        return filled

    def request(self, dataset: SessionDataset, i: int) -> RankRequest:
        """The no-hint request of table row ``i``."""
        history, candidates = dataset.session_items(int(self.rows[i]))
        return RankRequest(tuple(history), tuple(candidates), None, dataset.domain)

    def metric_ranks(self) -> np.ndarray:
        """``ranks`` with ``NO_RANKING`` read as 0 (not ranked); ``UNKNOWN`` stays -1."""
        return np.where(self.ranks == NO_RANKING, 0, self.ranks).astype(np.int16)
