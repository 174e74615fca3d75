"""The hf backend on tiny Llama models the tests build and load through ``from_pretrained``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_fixtures import build_chain_llama, build_tiny_llama, build_tokenizer, make_requests  # noqa: E402

from rec_gym.llm import make_llm  # noqa: E402
from rec_gym.llm.hf import DEFAULT_HF_MODEL, HFBackend, choose_labels, parse_model_spec  # noqa: E402
from rec_gym.llm.protocol import ChatBackend, LLMBackend, RankRequest  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on a busy 2-core machine OpenMP workers that wait
    # for each other make every forward pass ~40x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def requests_():
    return make_requests(n_sessions=2)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, requests_):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer(folder, requests_)
    build_tiny_llama(folder, tokenizer, seed=0)
    return folder


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory, requests_):
    """Numbers split into digits and no single letters: no scheme of 50 single-token labels exists."""
    folder = tmp_path_factory.mktemp("digit-llama")
    tokenizer = build_tokenizer(folder, requests_, single_token_numbers=False, letters=False, chat_template=False)
    build_tiny_llama(folder, tokenizer, seed=1)
    return folder


def full_prompt_label_logprobs(backend: HFBackend, request) -> np.ndarray:
    """Reference: every label scored by its own full forward pass over prefix + suffix + label, no cache."""
    prefix, suffix = backend.prompt_ids(request)
    _, label_ids, _ = backend.labels_for(len(request.candidates))
    out = []
    with torch.no_grad():
        for ids in label_ids:
            seq = torch.tensor([prefix + suffix + ids])
            logp = torch.log_softmax(backend.model(input_ids=seq).logits[0].float(), dim=-1)
            start = len(prefix) + len(suffix) - 1
            out.append(sum(float(logp[start + j, t]) for j, t in enumerate(ids)))
    return np.array(out)


def test_backend_loads_through_make_llm_and_implements_both_protocols(tiny_model):
    backend = make_llm(f"hf:{tiny_model}", local_files_only=True)
    assert isinstance(backend, HFBackend)
    assert isinstance(backend, LLMBackend) and isinstance(backend, ChatBackend)
    assert backend.name.startswith("hf:local:") and "mode=logits" in backend.name and "dtype=float32" in backend.name
    assert backend.device.type == "cpu" and not any(p.requires_grad and p.grad is not None for p in backend.model.parameters())


def test_single_token_numbers_are_chosen_when_the_tokenizer_has_them(tiny_model):
    backend = HFBackend(str(tiny_model), local_files_only=True)
    labels, label_ids, single = backend.labels_for(50)
    assert single and labels[:3] == ["1", "2", "3"] and labels[-1] == "50"
    assert [backend.tokenizer.convert_ids_to_tokens(i[0]) for i in label_ids[:2]] == ["1", "2"]
    assert len({i[0] for i in label_ids}) == 50


def test_letters_are_the_second_choice_and_multi_token_numbers_the_fallback(tmp_path, requests_):
    letters_only = build_tokenizer(tmp_path / "letters", requests_, single_token_numbers=False, letters=True)
    labels, _, single = choose_labels(letters_only, 50)
    assert single and labels[:2] == ["A", "B"] and labels[26] == "a"

    digits = build_tokenizer(tmp_path / "digits", requests_, single_token_numbers=False, letters=False)
    labels, label_ids, single = choose_labels(digits, 50)
    assert not single and labels[11] == "12"
    assert digits.convert_ids_to_tokens(label_ids[11]) == ["1", "2"]


def test_shared_prefix_scores_equal_independent_full_prompt_scores(tiny_model, requests_):
    shared = HFBackend(str(tiny_model), local_files_only=True, batch_size=4)
    independent = HFBackend(str(tiny_model), local_files_only=True, share_prefix=False)
    a, b = shared.scores(requests_), independent.scores(requests_)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-4, rtol=0)
    assert shared.rank(requests_) == independent.rank(requests_)
    # The same numbers as a plain forward pass over each full prompt, label by label.
    np.testing.assert_allclose(a[1], full_prompt_label_logprobs(shared, requests_[1]), atol=1e-4, rtol=0)
    # Hints change the ranking, and sessions are not mixed up inside one batch.
    assert a[0].argmax() != a[len(requests_) // 2].argmax() or not np.allclose(a[0], a[len(requests_) // 2])
    assert any(not np.allclose(a[0], s, atol=1e-3) for s in a[1:6])


def test_shared_prefix_is_exact_for_a_qwen2_model_too(tmp_path, requests_):
    # The default model is a Qwen2: attention biases and its cache layout go through the same path.
    tokenizer = build_tokenizer(tmp_path, requests_)
    build_tiny_llama(tmp_path, tokenizer, seed=2, model_type="qwen2")
    shared = HFBackend(str(tmp_path), local_files_only=True, batch_size=4)
    assert type(shared.model).__name__ == "Qwen2ForCausalLM"
    independent = HFBackend(str(tmp_path), local_files_only=True, share_prefix=False)
    for x, y in zip(shared.scores(requests_[:6]), independent.scores(requests_[:6])):
        np.testing.assert_allclose(x, y, atol=1e-4, rtol=0)


def test_ranking_is_all_candidates_by_descending_label_score(tiny_model, requests_):
    backend = HFBackend(str(tiny_model), local_files_only=True)
    ranking = backend.rank(requests_[:1])[0]
    scores = backend.scores(requests_[:1])[0]
    assert sorted(ranking) == list(range(50))
    assert ranking[0] == int(np.argmax(scores)) and np.all(np.diff(scores[ranking]) <= 0)


def test_multi_token_labels_are_scored_by_their_full_likelihood(digit_model, requests_):
    shared = HFBackend(str(digit_model), local_files_only=True, batch_size=64)
    assert shared.labels_for(15)[2] is False and "chat_template=none" in shared.name
    # 15 candidates: labels 1-9 are one token, 10-15 two, so the label lengths differ inside a batch.
    picked = [RankRequest(r.history, r.candidates[:15], r.hint) for r in (requests_[0], requests_[1], requests_[-1])]
    scores = shared.scores(picked)
    for request, s in zip(picked, scores):
        np.testing.assert_allclose(s, full_prompt_label_logprobs(shared, request), atol=1e-4, rtol=0)
    independent = HFBackend(str(digit_model), local_files_only=True, share_prefix=False, batch_size=64)
    np.testing.assert_allclose(independent.scores(picked[:1])[0], scores[0], atol=1e-4, rtol=0)
    # A bare prompt (no chat template) still ends with the answer prefix the labels continue.
    prefix, suffix = shared.prompt_ids(picked[0])
    assert shared.tokenizer.decode(suffix).split()[-2:] == ["Answer", ":"]


def test_generate_mode_writes_a_numbered_list_that_is_parsed(tmp_path, requests_):
    request = requests_[0]
    titles = [c.title for c in request.candidates]
    picks: list[int] = []  # the candidates the model will name, in order: three with no word in common
    for pos in (7, 3, 12, 20, 30, 40, 45, 1, 2, 5):
        if len(picks) < 3 and not set(titles[pos].split()) & {w for p in picks for w in titles[p].split()}:
            picks.append(pos)
    chain = []
    for k, pos in enumerate(picks, start=1):
        chain += ([f"{k}."] if k == 1 else [f"\n{k}."]) + titles[pos].split()
    tokenizer = build_tokenizer(tmp_path, requests_, extra_tokens=[t for t in chain if "." in t])
    build_chain_llama(tmp_path, tokenizer, chain, after="|>")
    backend = HFBackend(str(tmp_path), mode="generate", local_files_only=True, max_new_tokens=40)
    assert "mode=generate" in backend.name and "max_new_tokens=40" in backend.name
    rankings = backend.rank([request, requests_[1]])
    assert backend.last_replies[0].splitlines()[0].split() == ["1.", *titles[picks[0]].split()]
    assert rankings[0] == picks and rankings[1] == picks
    assert backend.generate([{"role": "user", "content": "Hint"}], max_new_tokens=2).split() == ["1.", titles[picks[0]].split()[0]]


def test_model_spec_parses_revision_and_keeps_local_paths(tmp_path):
    assert parse_model_spec("hf:Qwen/Qwen2.5-0.5B-Instruct@abc123") == ("Qwen/Qwen2.5-0.5B-Instruct", "abc123")
    assert parse_model_spec("gpt2") == ("gpt2", None)
    odd = tmp_path / "model@v2"
    odd.mkdir()
    assert parse_model_spec(str(odd)) == (str(odd), None)
    model_id, revision = parse_model_spec(DEFAULT_HF_MODEL)
    assert model_id == "Qwen/Qwen2.5-0.5B-Instruct" and len(revision) == 40


def test_unloadable_model_error_names_the_offline_alternatives(tmp_path):
    with pytest.raises(OSError) as err:
        HFBackend("rec-gym-tests/no-such-model@0123abcd", local_files_only=True)
    message = str(err.value)
    assert "rec-gym-tests/no-such-model" in message and "0123abcd" in message
    assert 'llm="simulated"' in message and 'llm="embedding:all-MiniLM-L6-v2"' in message and "local" in message


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free now, and nothing listens on it once the socket closes


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "unreachable HF_ENDPOINT"])
def test_a_hub_model_offline_fails_at_once_without_retries(tmp_path, offline):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("HF_HUB_OFFLINE", None)
    if offline == "HF_HUB_OFFLINE":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    script = f"from rec_gym.llm.hf import HFBackend\nHFBackend({DEFAULT_HF_MODEL!r})\n"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "could not load the hf model 'Qwen/Qwen2.5-0.5B-Instruct'" in done.stderr
    assert "not in the Hugging Face cache" in done.stderr and 'llm="simulated"' in done.stderr
    assert ("HF_HUB_OFFLINE is set" if offline == "HF_HUB_OFFLINE" else "the Hub did not answer") in done.stderr
    assert "Retrying" not in done.stderr + done.stdout
