"""Feedback tables: filling, codes, persistence, merging and provenance checks."""

from __future__ import annotations

import numpy as np
import pytest

from rec_gym.data.types import Catalog, Item, SessionDataset
from rec_gym.feedback.table import NO_RANKING, UNKNOWN, FeedbackTable, ProvenanceMismatch, kb_columns, make_provenance
from rec_gym.knowledge import load_knowledge_base


class ScriptedLLM:
    """Ranks the candidate at position ``len(hint)`` % n first; gives no ranking for the hint 'garbled'."""

    name = "scripted"

    def __init__(self):
        self.calls = 0

    def rank(self, requests):
        self.calls += len(requests)
        out = []
        for r in requests:
            if r.hint == "garbled":
                out.append(None)
                continue
            first = len(r.hint or "") % len(r.candidates)
            out.append([first] + [p for p in range(len(r.candidates)) if p != first])
        return out


@pytest.fixture
def dataset():
    catalog = Catalog([Item(str(i), f"Film {i}") for i in range(30)])
    n = 6
    history = np.array([[i, i + 1, i + 2, -1] for i in range(n)], dtype=np.int32)
    candidates = np.array([[(i + k) % 30 for k in range(10, 20)] for i in range(n)], dtype=np.int32)
    target = candidates[np.arange(n), np.arange(n) % 10]  # target of session i sits at position i
    return SessionDataset("tiny", catalog, history, target, candidates, np.array(["train"] * n),
                          np.array([f"s{i}" for i in range(n)]), "fp")


@pytest.fixture
def kb():
    return load_knowledge_base(["ab", "abcd", "garbled"])


def test_fill_records_the_rank_of_the_target_for_each_hint(dataset, kb):
    table = FeedbackTable(make_provenance(dataset, "train", kb, "scripted"), np.arange(6), kb_columns(kb))
    llm = ScriptedLLM()
    assert table.fill(dataset, llm) == 6 * 4 and llm.calls == 24
    # Session 2's target is at position 2: the hint "ab" (length 2) puts position 2 first.
    assert table.ranks[2, 1] == 1
    # No hint puts position 0 first, so the target at position 2 is third.
    assert table.ranks[2, 0] == 3
    assert (table.ranks[:, 3] == NO_RANKING).all()
    assert (table.metric_ranks()[:, 3] == 0).all() and table.complete


def test_fill_computes_only_unknown_entries(dataset, kb):
    table = FeedbackTable(make_provenance(dataset, "train", kb, "scripted"), np.arange(6), kb_columns(kb))
    llm = ScriptedLLM()
    table.fill(dataset, llm, table_rows=[0, 1], columns=[0, 2])
    assert llm.calls == 4 and table.n_known == 4 and (table.ranks[2:] == UNKNOWN).all()
    table.fill(dataset, llm, table_rows=[0, 1, 2], columns=[0, 2])
    assert llm.calls == 6


def test_saved_table_round_trips_and_saving_merges_what_another_process_wrote(dataset, kb, tmp_path):
    provenance = make_provenance(dataset, "train", kb, "scripted")
    path = tmp_path / "t.npz"
    a = FeedbackTable(provenance, np.arange(6), kb_columns(kb), path=path)
    b = FeedbackTable(provenance, np.arange(6), kb_columns(kb), path=path)
    a.fill(dataset, ScriptedLLM(), table_rows=[0, 1, 2])
    a.save()
    b.fill(dataset, ScriptedLLM(), table_rows=[3, 4, 5])
    b.save()
    loaded = FeedbackTable.load(path, expected=provenance)
    assert loaded.complete and loaded.provenance == provenance
    full = FeedbackTable(provenance, np.arange(6), kb_columns(kb))
    full.fill(dataset, ScriptedLLM())
    assert np.array_equal(loaded.ranks, full.ranks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz", "t.npz.lock"]  # no temporary file left behind


def test_loading_with_other_provenance_names_each_difference(dataset, kb, tmp_path):
    path = tmp_path / "t.npz"
    FeedbackTable(make_provenance(dataset, "train", kb, "scripted"), np.arange(6), kb_columns(kb), path=path).save()
    with pytest.raises(ProvenanceMismatch, match="backend: table has 'scripted', env needs 'other'"):
        FeedbackTable.load(path, expected=make_provenance(dataset, "train", kb, "other"))
    with pytest.raises(ProvenanceMismatch, match="other sessions"):
        FeedbackTable.load(path, expected=make_provenance(dataset, "train", kb, "scripted"), rows=np.arange(5))


def test_a_file_that_is_not_a_table_is_refused_with_its_path(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="junk.npz: not a readable rec_gym feedback table"):
        FeedbackTable.load(path)
