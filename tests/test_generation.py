"""The generation protocol: requests, cache keys, the cached writer and the backends' ``write``."""

from __future__ import annotations

import pytest
from llm_fixtures import ChatServer, build_tiny_llama, build_tokenizer, make_requests

from rec_gym.llm import make_llm
from rec_gym.llm.protocol import BackendUnavailable, GenerateRequest, WriterBackend, can_write
from rec_gym.llm.response_cache import CachedBackend, generation_key


def chat(text: str, **fields) -> GenerateRequest:
    return GenerateRequest((("user", text),), purpose="reflect", template_version="t-v1", **fields)


class CountingWriter:
    """Replies "reply to <last message> #<sample>"; fails, once each, for the texts listed in ``down``."""

    name = "counting-writer"

    def __init__(self, down: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.down = set(down or ())

    def rank(self, requests):
        return [None] * len(requests)

    def write(self, requests):
        replies, unsettled = [], set()
        for i, r in enumerate(requests):
            text = r.messages[-1][1]
            if text in self.down:
                self.down.discard(text)
                unsettled.add(i)
                replies.append(None)
                continue
            self.calls.append(text)
            replies.append(f"reply to {text} #{r.sample}")
        if unsettled:
            raise BackendUnavailable("127.0.0.1:9 refused", replies, unsettled, {"connection": len(unsettled)})
        return replies


def test_a_request_must_end_with_a_user_turn_and_use_known_roles():
    with pytest.raises(ValueError, match="end with a user turn"):
        GenerateRequest((("user", "a"), ("assistant", "b")))
    with pytest.raises(ValueError, match="'robot'"):
        GenerateRequest((("robot", "a"),))
    with pytest.raises(ValueError, match="temperature"):
        chat("a", temperature=-0.5)


def test_chat_builds_from_dicts_and_then_continues_the_conversation():
    first = GenerateRequest.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "why?"}])
    second = first.then("because", "and then?", purpose="reflect")
    assert second.messages == (("system", "be brief"), ("user", "why?"), ("assistant", "because"), ("user", "and then?"))
    assert second.purpose == "reflect" and first.purpose == "chat"
    assert second.as_dicts()[2] == {"role": "assistant", "content": "because"}


def test_the_key_covers_every_field_that_changes_the_reply_and_not_the_context():
    base = chat("why?", temperature=0.7)
    key = generation_key("m", base)
    assert generation_key("m", chat("why?", temperature=0.7, context={"target": 3})) == key
    others = [generation_key("m2", base), generation_key("m", chat("why?", temperature=0.7, sample=1)),
              generation_key("m", chat("why?", temperature=0.0)), generation_key("m", chat("why not?", temperature=0.7)),
              generation_key("m", chat("why?", temperature=0.7, max_new_tokens=9)),
              generation_key("m", GenerateRequest((("user", "why?"),), purpose="dedup", template_version="t-v1",
                                                  temperature=0.7)),
              generation_key("m", GenerateRequest((("user", "why?"),), purpose="reflect", template_version="t-v2",
                                                  temperature=0.7))]
    assert len({key, *others}) == 1 + len(others)


def test_cached_writer_answers_repeats_from_the_file_and_keeps_samples_apart(tmp_path):
    backend = CountingWriter()
    cached = CachedBackend(backend, tmp_path / "r.sqlite")
    requests = [chat("a"), chat("b"), chat("a", temperature=1.0, sample=0), chat("a", temperature=1.0, sample=1)]
    first = cached.write(requests)
    assert first == ["reply to a #0", "reply to b #0", "reply to a #0", "reply to a #1"]
    assert len(backend.calls) == 4 and cached.store.n_texts() == 4
    again = CachedBackend(CountingWriter(), tmp_path / "r.sqlite")
    assert again.write(requests + [chat("a")]) == first + ["reply to a #0"]
    assert again.backend.calls == [] and again.hits == 5


def test_an_outage_stores_only_the_replies_that_arrived(tmp_path):
    backend = CountingWriter(down={"b"})
    cached = CachedBackend(backend, tmp_path / "r.sqlite")
    with pytest.raises(BackendUnavailable) as caught:
        cached.write([chat("a"), chat("b"), chat("c")])
    assert caught.value.unsettled == {1} and caught.value.rankings[0] == "reply to a #0"
    assert cached.store.n_texts() == 2
    assert cached.write([chat("a"), chat("b"), chat("c")])[1] == "reply to b #0"
    assert backend.calls == ["a", "c", "b"]


def test_a_ranking_only_backend_cannot_write_and_says_which_can(tmp_path):
    class RankOnly:
        name = "rank-only"

        def rank(self, requests):
            return [None] * len(requests)

    cached = CachedBackend(RankOnly(), tmp_path / "r.sqlite")
    assert not can_write(RankOnly()) and not can_write(cached)
    assert can_write(CachedBackend(CountingWriter(), tmp_path / "r.sqlite"))
    with pytest.raises(TypeError, match="simulated, hf:<model> or openai:<model>"):
        cached.write([chat("a")])


def test_simulated_writer_refuses_a_purpose_it_does_not_simulate():
    llm = make_llm("simulated")
    assert isinstance(llm, WriterBackend)
    with pytest.raises(ValueError, match="'poem'"):
        llm.write([GenerateRequest((("user", "write a poem"),), purpose="poem")])


def test_openai_write_sends_each_requests_temperature_budget_and_a_seed_only_when_sampling(monkeypatch):
    monkeypatch.setenv("REC_GYM_TEST_KEY", "sk-test")
    with ChatServer() as server:
        backend = make_llm("openai:test-model", base_url=server.base_url, api_key_env="REC_GYM_TEST_KEY", timeout=5.0)
        replies = backend.write([chat("hello", max_new_tokens=9), chat("hi", temperature=0.8, sample=2)])
    assert replies == ["You said: hello", "You said: hi"]
    greedy, sampled = sorted(server.bodies, key=lambda b: b["messages"][-1]["content"])
    assert greedy["temperature"] == 0.0 and greedy["max_tokens"] == 9 and "seed" not in greedy
    assert sampled["temperature"] == 0.8 and sampled["max_tokens"] == 256
    assert sampled["seed"] == int(generation_key(backend.name, chat("hi", temperature=0.8, sample=2))[:12], 16)


def test_openai_write_raises_unavailable_and_stores_nothing_when_the_server_is_down(monkeypatch, tmp_path):
    import socket

    monkeypatch.setenv("REC_GYM_TEST_KEY", "sk-test")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = make_llm("openai:test-model", base_url=f"http://127.0.0.1:{port}/v1", api_key_env="REC_GYM_TEST_KEY",
                       timeout=2.0, max_retries=0)
    cached = CachedBackend(backend, tmp_path / "r.sqlite")
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}"):
        cached.write([chat("hello")])
    assert cached.store.n_texts() == 0


def test_hf_write_is_greedy_like_generate_and_samples_reproducibly(tmp_path):
    torch = pytest.importorskip("torch")
    requests_ = make_requests(n_sessions=1)
    tokenizer = build_tokenizer(tmp_path, requests_)
    build_tiny_llama(tmp_path, tokenizer, seed=0)
    backend = make_llm(f"hf:{tmp_path}", local_files_only=True, mode="generate")
    prompt = "I watched the following movies"
    greedy = chat(prompt, max_new_tokens=6)
    sampled = [chat(prompt, max_new_tokens=6, temperature=1.5, sample=k) for k in range(4)]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    replies = backend.write([greedy, *sampled])
    assert torch.equal(torch.get_rng_state(), state)  # sampling leaves the caller's random stream alone
    assert replies[0] == backend.generate([{"role": "user", "content": prompt}], max_new_tokens=6)
    assert backend.write(sampled) == replies[1:]
    assert len(set(replies[1:])) > 1  # four samples at temperature 1.5 are not all the same text


def test_a_reply_cached_by_an_earlier_version_of_a_simulated_writer_is_never_served(tmp_path):
    from rec_gym.data.types import Item
    from rec_gym.llm import simulated_preferences
    from rec_gym.recsys.preferences import preference_request

    history = [Item(str(i), f"Star Saga {i} ({1990 + i})", {"genres": ("Sci-Fi",), "year": 1990 + i}) for i in range(4)]
    request = preference_request(history, "movie", sample=0, temperature=1.0)
    simulated = make_llm("simulated")
    assert simulated.writer_version("preference") == simulated_preferences.VERSION != ""
    assert simulated.writer_version("reflect") == ""  # a writer without a version keeps its keys
    cached = CachedBackend(simulated, tmp_path / "r.sqlite")
    unversioned = generation_key(simulated.name, request)
    cached.store.put_texts(simulated.name, [(unversioned, request.template_version, "a reply of an earlier writer")])
    reply = cached.write([request])[0]
    assert reply == simulated.write([request])[0] != "a reply of an earlier writer"
    assert cached.misses == 1 and cached.hits == 0
    again = CachedBackend(make_llm("simulated"), tmp_path / "r.sqlite")
    assert again.write([request]) == [reply] and again.hits == 1
