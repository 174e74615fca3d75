"""The persistent response cache: keys, hits, batching, commits, and what is never stored."""

from __future__ import annotations

import pickle

import pytest
from llm_fixtures import make_requests

import rec_gym.llm.response_cache as response_cache
from rec_gym.llm.protocol import LLMBackend
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
        self.unsettled: frozenset[int] = frozenset()

    def rank(self, requests):
        if self.fail_on_batch is not None and len(self.batches) == self.fail_on_batch:
            raise RuntimeError("backend died")
        self.batches.append([r.hint for r in requests])
        self.unsettled = frozenset(i for i, r in enumerate(requests) if r.hint and r.hint == self.unsettled_for)
        return [None if r.hint and r.hint in (self.none_for, self.unsettled_for) else list(range(len(r.candidates)))[::-1]
                for r in requests]


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
    out = CachedBackend(backend, tmp_path / "r.sqlite").rank(requests)
    assert out[1] is None and out[2] is None
    rows = ResponseCache(tmp_path / "r.sqlite").dump()
    assert len(rows) == 2 and sorted(r[3] is None for r in rows) == [False, True]
    retry = CountingBackend()
    out = CachedBackend(retry, tmp_path / "r.sqlite").rank(requests)
    assert retry.batches == [["server unreachable"]] and out[1] is None and out[2] is not None


def test_unsettled_can_be_made_an_error_after_storing_the_rest(tmp_path):
    requests = make_requests(n_sessions=1, hints=(None, "server unreachable"))
    cached = CachedBackend(CountingBackend(unsettled_for="server unreachable"), tmp_path / "r.sqlite",
                           raise_on_unsettled=True)
    with pytest.raises(response_cache.UnsettledRequests, match="1 request"):
        cached.rank(requests)
    assert len(ResponseCache(tmp_path / "r.sqlite")) == 1


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
