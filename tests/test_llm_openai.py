"""The openai backend against a real HTTP server on 127.0.0.1 that injects latency and faults."""

from __future__ import annotations

import pickle
import time

import pytest
from llm_fixtures import HINTS, ChatServer, make_requests, server_top10

from rec_gym.llm import make_llm
from rec_gym.llm.openai_compat import OpenAIBackend
from rec_gym.llm.protocol import ChatBackend, LLMBackend

KEY = "sk-test-5f1e0c-never-print-me"


@pytest.fixture()
def key(monkeypatch):
    monkeypatch.setenv("REC_GYM_TEST_KEY", KEY)
    return "REC_GYM_TEST_KEY"


def requests_with(hints):
    return make_requests(n_sessions=1, n_candidates=30, hints=hints)


def expected(request):
    return server_top10([c.title for c in request.candidates])


def backend_for(server, key_env, **kwargs):
    kwargs = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0, **kwargs}
    return OpenAIBackend("test-model", base_url=server.base_url, api_key_env=key_env, **kwargs)


def test_replies_become_candidate_positions_and_the_key_goes_in_the_header(key):
    requests = requests_with((None,) + HINTS)
    with ChatServer() as server:
        backend = make_llm("openai:test-model", base_url=server.base_url, api_key_env=key)
        assert isinstance(backend, OpenAIBackend) and isinstance(backend, LLMBackend) and isinstance(backend, ChatBackend)
        rankings = backend.rank(requests)
        reply = backend.generate([{"role": "user", "content": "hello"}], max_new_tokens=7)
    assert rankings == [expected(r) for r in requests]
    assert not backend.failures and not backend.unsettled
    assert server.auth == [f"Bearer {KEY}"] * (len(requests) + 1)
    body = server.bodies[0]
    assert body["model"] == "test-model" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    assert body["messages"][0]["content"].startswith("I watched the following movies in order: ")
    assert server.bodies[-1]["max_tokens"] == 7 and reply == "You said: hello"


def test_timeouts_5xx_and_dropped_connections_are_retried_until_answered(key):
    faults = {HINTS[0]: ["500", "503"], HINTS[1]: ["drop"], HINTS[2]: ["cut"], HINTS[3]: ["slow"]}
    requests = requests_with(HINTS)
    with ChatServer(faults=faults, slow_seconds=1.5) as server:
        backend = backend_for(server, key, timeout=0.5, concurrency=5)
        rankings = backend.rank(requests)
    assert rankings == [expected(r) for r in requests]
    assert dict(backend.retries) == {"5xx": 2, "connection": 2, "timeout": 1}
    assert not backend.failures and not backend.unsettled
    assert server.attempts[HINTS[0]] == 3 and server.attempts[HINTS[4]] == 1


def test_429_is_retried_after_the_retry_after_delay(key):
    requests = requests_with(HINTS[:2])
    with ChatServer(faults={HINTS[0]: ["429"]}, retry_after="1") as server:
        rankings = backend_for(server, key).rank(requests)
    first, second = server.times[HINTS[0]]
    assert 1.0 <= second - first < 2.0  # the backoff alone would wait about 10 ms
    assert rankings == [expected(r) for r in requests]


def test_unusable_replies_become_none_and_are_counted_without_raising(key):
    faults = {HINTS[0]: ["garbage"], HINTS[1]: ["empty"], HINTS[2]: ["truncated"], HINTS[3]: ["nonsense"],
              "bad request": ["400"]}
    requests = requests_with((None, *HINTS[:4], "bad request"))
    with ChatServer(faults=faults) as server:
        backend = backend_for(server, key)
        rankings = backend.rank(requests)
    assert rankings[0] == expected(requests[0])
    assert rankings[1:] == [None] * 5
    assert dict(backend.failures) == {"malformed": 1, "empty": 1, "truncated": 1, "unparseable": 1, "http_400": 1}
    assert not backend.retries and not backend.unsettled  # a reply is an answer: nothing was retried


def test_requests_that_never_get_an_answer_are_none_and_unsettled(key):
    requests = requests_with((None, HINTS[0]))
    with ChatServer(faults={HINTS[0]: ["500"] * 10}) as server:
        backend = backend_for(server, key, max_retries=2)
        rankings = backend.rank(requests)
    assert rankings == [expected(requests[0]), None]
    assert server.attempts[HINTS[0]] == 3 and backend.failures["gave_up"] == 1 and backend.unsettled == {1}


def test_concurrency_is_bounded_and_used(key):
    requests = make_requests(n_sessions=4, n_candidates=20)  # 24 requests
    with ChatServer(latency=0.1) as server:
        backend = backend_for(server, key, concurrency=6)
        start = time.perf_counter()
        rankings = backend.rank(requests)
        elapsed = time.perf_counter() - start
    assert server.max_in_flight == 6
    assert elapsed < 24 * 0.1 / 3  # sequential would take 2.4 s
    assert rankings == [expected(r) for r in requests]


def test_refused_key_raises_a_clear_error_that_does_not_echo_the_key(key):
    requests = requests_with((HINTS[0],))
    with ChatServer(faults={HINTS[0]: ["401"]}) as server:
        backend = backend_for(server, key)
        with pytest.raises(RuntimeError, match="401") as err:
            backend.rank(requests)
    assert "REC_GYM_TEST_KEY" in str(err.value) and KEY not in str(err.value)


def test_the_key_is_not_in_name_repr_pickle_or_cache(key, tmp_path):
    from rec_gym.llm.response_cache import CachedBackend

    requests = requests_with((None, HINTS[0]))
    with ChatServer() as server:
        backend = backend_for(server, key)
        cached = CachedBackend(backend, tmp_path / "responses.sqlite")
        assert cached.rank(requests) == [expected(r) for r in requests]
        cached.close()
    blob = pickle.dumps(backend)
    for text in (backend.name, repr(backend), blob.decode("latin-1")):
        assert KEY not in text
    for file in tmp_path.iterdir():
        assert KEY.encode() not in file.read_bytes()
    assert pickle.loads(blob)._api_key == KEY  # a copy re-reads it from the environment


def test_openai_host_without_a_key_is_refused_with_the_variable_name(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o-mini")
    with pytest.raises(ValueError, match="credentials"):
        OpenAIBackend("m", base_url="http://user:secret@127.0.0.1:9/v1")
    local = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")  # local servers need no key
    assert local.name == 'openai:m@127.0.0.1:9/v1(max_tokens=512,temperature=0.0)'
