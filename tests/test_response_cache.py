"""The persistent response cache: keys, hits, batching, commits, and what is never stored."""

from __future__ import annotations

import pickle

import pytest
from llm_fixtures import make_requests

import rec_gym.llm.response_cache as response_cache
from rec_gym.llm.protocol import BackendUnavailable, LLMBackend
from rec_gym.llm.response_cache import CachedBackend, ResponseCache, request_key


class CountingBackend:
    """Ranks by reversing the candidate positions; records every batch it is asked for."""

    def __init__(self, name: str = "counting-v1", fail_on_batch: int | None = None,
                 none_for: str | None = None, unsettled_for: str | None = None) -> None:
        self.name = name
        self.batches: list[list[str | None]] = []
        self.fail_on_batch = fail_on_batch
        self.none_for = none_for
        self.unsettled_for = unsettled_for

    def rank(self, requests):
        if self.fail_on_batch is not None and len(self.batches) == self.fail_on_batch:
            raise RuntimeError("backend died")
        self.batches.append([r.hint for r in requests])
        rankings = [None if r.hint and r.hint in (self.none_for, self.unsettled_for) else
                    list(range(len(r.candidates)))[::-1] for r in requests]
        unsettled = {i for i, r in enumerate(requests) if r.hint and r.hint == self.unsettled_for}
        if unsettled:
            raise BackendUnavailable("server unreachable", rankings, unsettled, {"connection": len(unsettled)})
        return rankings


def test_hits_come_from_the_file_and_misses_from_the_backend(tmp_path):
    requests = make_requests(n_sessions=2)  # 2 sessions x 6 hints
    backend = CountingBackend()
    cached = CachedBackend(backend, tmp_path / "r.sqlite")
    assert isinstance(cached, LLMBackend) and cached.name == backend.name
    first = cached.rank(requests)
    assert sum(len(b) for b in backend.batches) == 12 and (cached.hits, cached.misses) == (0, 12)
    again = CachedBackend(CountingBackend(), tmp_path / "r.sqlite")  # a new process, the same file
    assert again.rank(requests) == first and again.backend.batches == [] and again.hits == 12
    assert first[0] == list(range(50))[::-1]


def test_the_key_covers_backend_template_prompt_candidates_and_hint(monkeypatch):
    base = make_requests(n_sessions=1, hints=("Prefer recent releases.",))[0]
    key = request_key("b", base)
    assert len(key) == 32 and key == request_key("b", base)
    assert request_key("b2", base) != key
    assert request_key("b", base.with_hint("Prefer older films.")) != key
    assert request_key("b", base.with_hint(None)) != key
    swapped = type(base)(base.history, base.candidates[1:] + base.candidates[:1], base.hint, base.domain)
    assert request_key("b", swapped) != key
    monkeypatch.setattr(response_cache, "TEMPLATE_VERSION", "re2llm-rank-v999")
    assert request_key("b", base) != key


def test_misses_go_in_whole_session_batches_each_committed(tmp_path):
    requests = make_requests(n_sessions=3)  # 3 sessions x 6 hints
    backend = CountingBackend(fail_on_batch=2)
    cached = CachedBackend(backend, tmp_path / "r.sqlite", batch_size=8)
    with pytest.raises(RuntimeError, match="backend died"):
        cached.rank(requests)
    assert [len(b) for b in backend.batches] == [6, 6]  # 6 + 6 > 8: sessions are not split
    assert len(ResponseCache(tmp_path / "r.sqlite")) == 12  # both finished batches were committed
    resumed = CountingBackend()
    CachedBackend(resumed, tmp_path / "r.sqlite", batch_size=8).rank(requests)
    assert resumed.batches == [[r.hint for r in requests[12:]]]


def test_duplicates_in_one_call_are_computed_once(tmp_path):
    requests = make_requests(n_sessions=1)
    backend = CountingBackend()
    out = CachedBackend(backend, tmp_path / "r.sqlite").rank(requests + requests[:3])
    assert sum(len(b) for b in backend.batches) == 6 and out[6:] == out[:3]


def test_no_ranking_is_stored_but_an_unsettled_request_is_not(tmp_path):
    hints = (None, "garbled reply", "server unreachable")
    requests = make_requests(n_sessions=1, hints=hints)
    backend = CountingBackend(none_for="garbled reply", unsettled_for="server unreachable")
    with pytest.raises(BackendUnavailable) as err:
        CachedBackend(backend, tmp_path / "r.sqlite").rank(requests)
    out = err.value.rankings
    assert err.value.unsettled == {2} and out[0] is not None and out[1] is None
    rows = ResponseCache(tmp_path / "r.sqlite").dump()
    assert len(rows) == 2 and sorted(r[3] is None for r in rows) == [False, True]
    retry = CountingBackend()
    out = CachedBackend(retry, tmp_path / "r.sqlite").rank(requests)
    assert retry.batches == [["server unreachable"]] and out[1] is None and out[2] is not None


def test_unavailability_stops_at_the_first_batch_and_reports_every_request_not_answered(tmp_path):
    # 2 sessions of 2 requests, one per batch: the first batch loses its hinted request, the second is never sent.
    requests = make_requests(n_sessions=2, hints=(None, "server unreachable"))
    backend = CountingBackend(unsettled_for="server unreachable")
    with pytest.raises(BackendUnavailable, match="server unreachable") as err:
        CachedBackend(backend, tmp_path / "r.sqlite", batch_size=2).rank(requests)
    assert err.value.unsettled == {1, 2, 3} and len(backend.batches) == 1
    assert len(ResponseCache(tmp_path / "r.sqlite")) == 1


def test_a_damaged_stored_ranking_is_never_returned_and_is_computed_again(tmp_path):
    import sqlite3

    requests = make_requests(n_sessions=1, hints=(None, "a"), n_candidates=20)
    first = CachedBackend(CountingBackend(), tmp_path / "r.sqlite").rank(requests)
    conn = sqlite3.connect(tmp_path / "r.sqlite")
    key = request_key("counting-v1", requests[1])
    for blob in (bytes([99, 0]) + bytes(2), bytes([3, 0, 3, 0])):  # position 99 of 20; position 3 twice
        conn.execute("UPDATE responses SET ranking = ? WHERE key = ?", (blob, key))
        conn.commit()
        again = CountingBackend()
        cached = CachedBackend(again, tmp_path / "r.sqlite")
        assert cached.rank(requests) == first and cached.damaged == 1 and again.batches == [["a"]]
        assert response_cache._decode(conn.execute("SELECT ranking FROM responses WHERE key = ?", (key,)).fetchone()[0]) \
            == first[1]  # the row was replaced by the recomputed answer


def test_a_cache_damaged_mid_run_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "r.sqlite"
    cached = CachedBackend(CountingBackend(), path)
    cached.rank(make_requests(n_sessions=3))
    cached.close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # every page after the header
    path.write_bytes(bytes(data))
    with pytest.raises(response_cache.DamagedCache, match=r"r\.sqlite is damaged .*move it aside"):
        CachedBackend(CountingBackend(), path).rank(make_requests(n_sessions=1))


def test_a_cached_backend_pickles_without_its_connection(tmp_path):
    requests = make_requests(n_sessions=1)
    cached = CachedBackend(CountingBackend(), tmp_path / "r.sqlite")
    first = cached.rank(requests)
    copy = pickle.loads(pickle.dumps(cached))
    assert copy.rank(requests) == first and copy.backend.batches == [[r.hint for r in requests]]  # copied state
    assert copy.hits == len(requests)


def test_a_file_that_is_not_a_cache_is_refused_with_its_path(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ValueError, match="bad.sqlite"):
        len(ResponseCache(bad))
