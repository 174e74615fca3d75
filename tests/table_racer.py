"""A process that fills some sessions of a shared feedback table, waits for a start signal, then saves.

``python tests/table_racer.py TABLE FIRST LAST READY GO`` fills table rows ``FIRST..LAST - 1`` of the tiny
table described by :func:`tiny_case`, touches ``READY``, waits until ``GO`` exists, and saves: two of
these started on one table and released together race their read-merge-replace.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from rec_gym.data.types import Catalog, Item, SessionDataset
from rec_gym.feedback.table import FeedbackTable, kb_columns, make_provenance
from rec_gym.knowledge import load_knowledge_base

N_SESSIONS = 40


class PositionLLM:
    """Ranks the candidate at position ``len(hint) % n`` first, then the rest in order."""

    name = "position-v1"

    def rank(self, requests):
        out = []
        for r in requests:
            first = len(r.hint or "") % len(r.candidates)
            out.append([first] + [p for p in range(len(r.candidates)) if p != first])
        return out


def tiny_case():
    """(dataset, kb, provenance, columns) of a 40-session, 3-hint table."""
    catalog = Catalog([Item(str(i), f"Film {i}") for i in range(60)])
    history = np.array([[i % 60, (i + 1) % 60, (i + 2) % 60] for i in range(N_SESSIONS)], dtype=np.int32)
    candidates = np.array([[(i + k) % 60 for k in range(10, 20)] for i in range(N_SESSIONS)], dtype=np.int32)
    target = candidates[np.arange(N_SESSIONS), np.arange(N_SESSIONS) % 10]
    dataset = SessionDataset("tiny", catalog, history, target, candidates, np.array(["train"] * N_SESSIONS),
                             np.array([f"s{i}" for i in range(N_SESSIONS)]), "fp")
    kb = load_knowledge_base(["ab", "abcd", "abcdef"])
    return dataset, kb, make_provenance(dataset, "train", kb, PositionLLM.name), kb_columns(kb)


def open_table(path: str | Path) -> FeedbackTable:
    _, _, provenance, columns = tiny_case()
    return FeedbackTable.open(provenance, np.arange(N_SESSIONS), columns, path=path, max_rank=10)


def main(path: str, first: int, last: int, ready: str, go: str) -> None:
    dataset = tiny_case()[0]
    table = open_table(path)
    table.fill(dataset, PositionLLM(), table_rows=range(first, last))
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.0005)
    table.save()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
