"""Small things the LLM-backend tests build for themselves: sessions, tokenizers, tiny models, fake backends.

Nothing here downloads anything. Models are saved with ``save_pretrained`` to a temporary folder and
loaded back through the same ``from_pretrained`` path a real Hub model takes.
"""

from __future__ import annotations

import json
import os
import string
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rec_gym.data.types import Item
from rec_gym.llm.prompts import ANSWER_PREFIX, labelled_session_prefix, render_prompt
from rec_gym.llm.protocol import RankRequest, Ranking

WORDS = ("Silent Crimson Hidden Broken Golden Midnight Frozen Wild Distant Burning Hollow Iron Velvet Paper "
         "Electric Savage Quiet Lonely Harbor Garden Frontier Empire Station Highway Kingdom Circus Orchard "
         "Signal Canyon Mirror Lighthouse Carnival Harvest Archive Voyage Tide").split()
HINTS = ("Prefer recent releases.", "Think about the genre of the last movie.", "Popular titles are a safe bet.",
         "Look for sequels of what was watched.", "Avoid blockbusters, prefer niche films.")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def make_items(n: int, seed: int = 0, prefix: str = "m") -> list[Item]:
    """``n`` movies with distinct two-word titles (``"Silent Harbor"``), a year and one genre."""
    rng = np.random.default_rng(seed)
    pairs = [(a, b) for a in WORDS[:18] for b in WORDS[18:]]
    order = rng.permutation(len(pairs))[:n]
    return [Item(f"{prefix}{i}", f"{pairs[j][0]} {pairs[j][1]}",
                 {"year": int(1960 + (7 * i) % 60), "genres": (("Drama", "Comedy", "Horror")[i % 3],)})
            for i, j in enumerate(order)]


def make_requests(n_sessions: int = 2, n_history: int = 20, n_candidates: int = 50,
                  hints: Sequence[str | None] = (None,) + HINTS, seed: int = 0) -> list[RankRequest]:
    """``n_sessions`` x ``len(hints)`` requests, the hints of a session consecutive."""
    catalog = make_items(n_history + n_candidates + 40, seed)
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(n_sessions):
        picks = rng.permutation(len(catalog))
        history = tuple(catalog[i] for i in picks[:n_history])
        candidates = tuple(catalog[i] for i in picks[n_history:n_history + n_candidates])
        out.extend(RankRequest(history, candidates, hint) for hint in hints)
    return out


def _prompt_words(requests: Sequence[RankRequest]) -> list[str]:
    from tokenizers import pre_tokenizers

    labels = [str(i) for i in range(1, 51)] + list(string.ascii_letters)
    texts = [CHAT_TEMPLATE, ANSWER_PREFIX, "<|user|> <|assistant|> <|system|>"]
    for r in requests:
        texts.append(labelled_session_prefix(r, labels[:len(r.candidates)]) + " Hint: " + (r.hint or ""))
        texts.append(render_prompt(r))
    words = {w for text in texts for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)}
    return sorted(words | set(labels) | set(string.digits))


def build_tokenizer(folder: str | os.PathLike, requests: Sequence[RankRequest], *, single_token_numbers: bool = True,
                    letters: bool = True, chat_template: bool = True, extra_tokens: Sequence[str] = ()):
    """A word-level tokenizer whose vocabulary covers ``requests``' prompts, saved to ``folder``.

    ``single_token_numbers=False`` splits numbers into digits (so ``"12"`` is two tokens) and
    ``letters=False`` leaves single letters out of the vocabulary: together they force the
    multi-token label fallback. ``extra_tokens`` are added verbatim (e.g. ``"\\n2."``).
    """
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = _prompt_words(requests)
    if not letters:
        words = [w for w in words if not (len(w) == 1 and w in string.ascii_letters)]
    if not single_token_numbers:
        words = [w for w in words if not (w.isdigit() and len(w) > 1)]
    vocab = {"[UNK]": 0, "[PAD]": 1, "</s>": 2, "<s>": 3}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    splitters = [pre_tokenizers.Whitespace()]
    if not single_token_numbers:
        splitters.append(pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(splitters)
    if extra_tokens:
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in extra_tokens])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_tiny_llama(folder: str | os.PathLike, tokenizer, seed: int = 0, hidden: int = 64, layers: int = 2,
                     model_type: str = "llama"):
    """A randomly initialised ``model_type`` ("llama" or "qwen2"; ``hidden`` wide, ``layers`` deep, GQA 4/2
    heads) saved as safetensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), hidden_size=hidden,
                                  intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=4096,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                  bos_token_id=None, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(config)
    # Random init is nearly uniform over the vocabulary; a wider spread makes label scores distinct.
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(folder, safe_serialization=True)
    return model


def build_chain_llama(folder: str | os.PathLike, tokenizer, chain: Sequence[str], after: str):
    """A 1-layer Llama that greedily writes ``chain`` (tokens) after the token ``after``, then ``</s>``.

    Attention and MLP outputs are zero, so the logits depend on the current token only: the embedding
    is one-hot and ``lm_head`` maps each chain token to the next one. ``chain`` must not repeat a token.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in [after, *chain]]
    if len(set(ids)) != len(ids) or tokenizer.unk_token_id in ids:
        raise ValueError(f"chain tokens must be distinct vocabulary entries: {[after, *chain]}")
    hidden = vocab + (-vocab) % 8  # 4 heads of an even width, as RoPE needs
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        for norm in (model.model.norm, model.model.layers[0].input_layernorm, model.model.layers[0].post_attention_layernorm):
            norm.weight.fill_(1.0)
        model.lm_head.weight[tokenizer.eos_token_id, :vocab] = 1.0  # every token not in the chain ends the reply
        for cur, nxt in zip(ids, ids[1:]):
            model.lm_head.weight[:, cur] = 0.0
            model.lm_head.weight[nxt, cur] = 2.0
    model.save_pretrained(folder, safe_serialization=True)
    return model


class SlowFakeBackend:
    """A deterministic backend that sleeps per request and logs every request it computes to a side file.

    The ranking is a permutation of the candidate positions seeded by the request's response-cache key
    (``None`` for about one request in 17), so a rerun computes exactly the same rankings. Each computed
    request appends one line, its cache key, to ``log_path`` before the batch returns: counting lines
    proves which requests were computed twice.
    """

    def __init__(self, log_path: str | os.PathLike, delay: float = 0.0, seed: int = 0) -> None:
        self.log_path = Path(log_path)
        self.delay = float(delay)
        self.seed = int(seed)
        self.name = f"slow-fake-v1(seed={self.seed})"

    def digest(self, request: RankRequest) -> str:
        from rec_gym.llm.response_cache import request_key

        return request_key(self.name, request)

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        out: list[Ranking] = []
        with open(self.log_path, "a", encoding="utf-8") as log:
            for r in requests:
                time.sleep(self.delay)
                d = self.digest(r)
                rng = np.random.default_rng([self.seed, int(d, 16) % (2 ** 63)])
                out.append(None if int(d, 16) % 17 == 0 else rng.permutation(len(r.candidates)).tolist())
                log.write(d + "\n")
                log.flush()
        return out


def make_slow_backend() -> SlowFakeBackend:
    """Factory for ``rec-gym precompute --backend-factory llm_fixtures:make_slow_backend`` (reads the env)."""
    return SlowFakeBackend(os.environ["REC_GYM_TEST_CALL_LOG"], float(os.environ.get("REC_GYM_TEST_DELAY", "0")))


class FlakyBackend(SlowFakeBackend):
    """Like :class:`SlowFakeBackend`, but its second call gets no answer for any request
    (:class:`~rec_gym.llm.protocol.BackendUnavailable`), as the openai backend raises when a server stays
    unreachable; only once per flag file."""

    def __init__(self, log_path: str | os.PathLike, flag_path: str | os.PathLike) -> None:
        super().__init__(log_path)
        self.flag_path = Path(flag_path)
        self.calls = 0

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        from rec_gym.llm.protocol import BackendUnavailable

        self.calls += 1
        if self.calls == 2 and not self.flag_path.exists():
            self.flag_path.touch()
            raise BackendUnavailable("flaky: no answer", [None] * len(requests), set(range(len(requests))),
                                     {"connection": len(requests)})
        return super().rank(requests)


def make_flaky_backend() -> FlakyBackend:
    return FlakyBackend(os.environ["REC_GYM_TEST_CALL_LOG"], os.environ["REC_GYM_TEST_FLAG"])


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- a local chat-completions server

def candidates_in_prompt(prompt: str) -> list[str]:
    """The candidate titles of a paper-style prompt (between "candidate set: " and ". Please recommend")."""
    if "from a candidate set: " not in prompt:
        return []
    body = prompt.split("from a candidate set: ", 1)[1].split(". Please recommend from the candidate set.", 1)[0]
    return body.split("; ")


def hint_in_prompt(prompt: str) -> str:
    return prompt.split(" Hint: ", 1)[1] if " Hint: " in prompt else ""


def server_top10(titles: Sequence[str]) -> list[int]:
    """The ranking the test server's "ok" reply encodes: candidate positions by title, first ten."""
    return sorted(range(len(titles)), key=lambda i: titles[i])[:10]


class ChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 with injectable faults.

    ``faults`` maps a hint text to the faults of its successive attempts (then "ok"): ``"429"`` (with
    ``Retry-After: retry_after``), ``"500"``, ``"503"``, ``"drop"`` (close without answering), ``"cut"``
    (a body shorter than its Content-Length), ``"slow"`` (answer after ``slow_seconds``), ``"garbage"``
    (200, not JSON), ``"empty"``, ``"truncated"`` (``finish_reason=length``), ``"nonsense"`` (names no
    candidate), ``"401"``, ``"400"``, ``"422"``, ``"301"`` (to ``location``). ``"ok"`` answers the first ten candidates by title, numbered,
    after ``latency`` seconds. Every request's Authorization header is recorded.
    """

    def __init__(self, latency: float = 0.0, faults: dict[str, list[str]] | None = None, retry_after: str = "1",
                 slow_seconds: float = 1.0, location: str = "", port: int = 0) -> None:
        import collections

        self.latency = latency
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.location = location
        self.port = port
        self.attempts: collections.Counter[str] = collections.Counter()
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.auth: list[str | None] = []
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def _fault(self, hint: str) -> str:
        with self._lock:
            attempt = self.attempts[hint]
            self.attempts[hint] += 1
            self.times[hint].append(time.monotonic())
        plan = self.faults.get(hint, [])
        return plan[attempt] if attempt < len(plan) else "ok"

    def __enter__(self) -> "ChatServer":
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, length: int | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _reply(self, content: str, finish: str = "stop") -> None:
                body = {"id": "x", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]}
                self._send(200, json.dumps(body).encode())

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.auth.append(self.headers.get("Authorization"))
                try:
                    request = json.loads(data)
                    with server._lock:
                        server.bodies.append(request)
                    prompt = request["messages"][-1]["content"]
                    fault = server._fault(hint_in_prompt(prompt))
                    if server.latency:
                        time.sleep(server.latency)
                    if fault == "ok" or fault == "slow":
                        if fault == "slow":
                            time.sleep(server.slow_seconds)
                        titles = candidates_in_prompt(prompt)
                        if not titles:
                            self._reply(f"You said: {prompt}")
                            return
                        self._reply("Here you go:\n" + "\n".join(f"{k}. {titles[i]}"
                                                                  for k, i in enumerate(server_top10(titles), 1)))
                    elif fault in ("429", "500", "503", "401", "400", "422", "301"):
                        headers = ({"Retry-After": server.retry_after} if fault == "429" else
                                   {"Location": server.location} if fault == "301" else {})
                        self._send(int(fault), b'{"error": {"message": "injected"}}', headers)
                    elif fault == "drop":
                        self.close_connection = True
                    elif fault == "cut":
                        self._send(200, b'{"choices": [', length=1000)
                        self.close_connection = True
                    elif fault == "garbage":
                        self._send(200, b"<html>502 Bad Gateway</html>")
                    elif fault == "empty":
                        self._reply("")
                    elif fault == "truncated":
                        self._reply("1. " + candidates_in_prompt(prompt)[0], finish="length")
                    elif fault == "nonsense":
                        self._reply("I am sorry, I cannot recommend movies.")
                    else:
                        raise ValueError(f"unknown fault {fault!r}")
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
