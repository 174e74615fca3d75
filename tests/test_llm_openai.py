"""The openai backend against a real HTTP server on 127.0.0.1 that injects latency and faults."""

from __future__ import annotations

import pickle

import pytest
from llm_fixtures import HINTS, ChatServer, make_requests, server_top10

from rec_gym.llm import make_llm
from rec_gym.llm.openai_compat import OpenAIBackend
from rec_gym.llm.protocol import BackendConfigError, BackendUnavailable, ChatBackend, LLMBackend

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
    kwargs = {"timeout": 5.0, **kwargs}
    return OpenAIBackend("test-model", base_url=server.base_url, api_key_env=key_env, **kwargs)


def test_replies_become_candidate_positions_and_the_key_goes_in_the_header(key):
    requests = requests_with((None,) + HINTS)
    with ChatServer() as server:
        backend = make_llm("openai:test-model", base_url=server.base_url, api_key_env=key)
        assert isinstance(backend, OpenAIBackend) and isinstance(backend, LLMBackend) and isinstance(backend, ChatBackend)
        rankings = backend.rank(requests)
        reply = backend.generate([{"role": "user", "content": "hello"}], max_new_tokens=7)
    assert rankings == [expected(r) for r in requests]
    assert not backend.failures and not backend.retries
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
    assert dict(backend.retries) == {"5xx": 2, "no_response": 3}  # drop and cut: no response; slow: timed out
    assert not backend.failures
    assert server.attempts[HINTS[0]] == 3 and server.attempts[HINTS[4]] == 1


def test_429_is_retried_after_the_retry_after_delay(key):
    requests = requests_with(HINTS[:2])
    with ChatServer(faults={HINTS[0]: ["429"]}, retry_after="1") as server:
        rankings = backend_for(server, key).rank(requests)
    first, second = server.times[HINTS[0]]
    assert 1.0 <= second - first < 2.0  # Retry-After: 1, honoured
    assert rankings == [expected(r) for r in requests]


def test_unusable_replies_become_none_and_are_counted_without_raising(key):
    faults = {HINTS[0]: ["garbage"], HINTS[1]: ["empty"], HINTS[2]: ["truncated"], HINTS[3]: ["nonsense"]}
    requests = requests_with((None, *HINTS[:4]))
    with ChatServer(faults=faults) as server:
        backend = backend_for(server, key)
        rankings = backend.rank(requests)
    assert rankings[0] == expected(requests[0])
    assert rankings[1:] == [None] * 4
    assert dict(backend.failures) == {"malformed": 1, "empty": 1, "truncated": 1, "unparseable": 1}
    assert not backend.retries  # a reply is an answer: nothing was retried


def test_requests_that_never_get_an_answer_raise_with_the_other_answers(key):
    requests = requests_with((None, HINTS[0]))
    with ChatServer(faults={HINTS[0]: ["500"] * 10}) as server:
        backend = backend_for(server, key, max_retries=2)
        with pytest.raises(BackendUnavailable, match=r"1 of 2 request\(s\).*5xx: 1") as err:
            backend.rank(requests)
    assert err.value.rankings[0] == expected(requests[0]) and err.value.unsettled == {1}
    assert err.value.causes == {"5xx": 1} and server.base_url in str(err.value)
    assert server.attempts[HINTS[0]] == 3 and backend.failures == {"unanswered:5xx": 1} and backend.retries == {"5xx": 2}


def test_a_server_that_cannot_be_reached_is_unavailable_naming_it(key):
    with ChatServer() as server:
        url = server.base_url  # the port is free once the server is gone
    backend = OpenAIBackend("m", base_url=url, api_key_env=key, max_retries=1, timeout=2.0)
    with pytest.raises(BackendUnavailable, match="127.0.0.1.*connection: 2") as err:
        backend.rank(requests_with((None, HINTS[0])))
    assert err.value.unsettled == {0, 1}


@pytest.mark.parametrize("status", ["400", "422", "301"])
def test_client_errors_and_redirects_are_configuration_errors_raised_at_once(key, status):
    requests = requests_with((None,) + HINTS)
    with ChatServer(faults={h: [status] * 10 for h in ("",) + HINTS}, location="https://elsewhere.example/v1") as server:
        backend = backend_for(server, key, concurrency=1)
        with pytest.raises(BackendConfigError, match=f"HTTP {status}") as err:
            backend.rank(requests)
    assert sum(server.attempts.values()) == 1  # stopped at the first refusal, never retried
    if status == "301":
        assert "elsewhere.example" in str(err.value) and "base_url" in str(err.value)
    else:
        assert "injected" in str(err.value)  # the start of the body


def test_concurrency_is_bounded_and_used(key):
    requests = make_requests(n_sessions=4, n_candidates=20)  # 24 requests
    with ChatServer(latency=0.1) as server:
        backend = backend_for(server, key, concurrency=6)
        rankings = backend.rank(requests)
    assert server.max_in_flight == 6  # never more than asked, and all of it used (throughput: benchmarks/)
    assert rankings == [expected(r) for r in requests]


def test_refused_key_raises_a_clear_error_that_does_not_echo_the_key(key):
    requests = requests_with((HINTS[0],))
    with ChatServer(faults={HINTS[0]: ["401"]}) as server:
        backend = backend_for(server, key)
        with pytest.raises(BackendConfigError, match="401") as err:
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
    assert local.name == 'openai:m@http://127.0.0.1:9/v1(max_tokens=512,temperature=0.0)'
    # The scheme is part of the identity: answers over https are never taken for answers over http.
    assert OpenAIBackend("m", base_url="https://127.0.0.1:9/v1").name != local.name


def test_base_url_comes_from_the_environment_like_the_official_client(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v2")
    assert OpenAIBackend("m").base_url == "http://127.0.0.1:9/v2"
