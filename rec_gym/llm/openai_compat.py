"""``openai:`` backend: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Each request sends the paper's prompt (:func:`rec_gym.llm.prompts.render_prompt`) as one user turn to
``<base_url>/chat/completions`` through the official ``openai`` package's async client (up to
``concurrency`` requests in flight) and reads the numbered top-10 reply with
:func:`rec_gym.llm.parsing.parse_ranking`. The client's own retry policy applies: timeouts, dropped
connections, HTTP 408, 409, 429 and 5xx are retried with exponential backoff, honouring
``Retry-After``; proxies and ``OPENAI_BASE_URL`` from the environment work as with the client itself.

What becomes of each outcome (see :mod:`rec_gym.llm.protocol` for settled and unsettled):

=====================================================  ==================================================
what happened                                          what ``rank`` does
=====================================================  ==================================================
no answer after ``max_retries`` retries (timeouts,     raises :class:`~rec_gym.llm.protocol.BackendUnavailable`
connection refused or dropped, 408/409/429/5xx)        after the other requests finish; counted as
                                                       ``unanswered:<cause>``; nothing is stored for it
any other HTTP 4xx, or a 3xx redirect                  raises :class:`~rec_gym.llm.protocol.BackendConfigError`
                                                       at once with the status and the start of the body
                                                       (redirects are not followed: set ``base_url`` to
                                                       the ``Location``)
a body that is not a chat completion                   ``None`` (an answer: "no ranking"), ``malformed``
an empty reply                                         ``None``, counted as ``empty``
a reply cut by ``max_tokens`` (``finish_reason=length``)  ``None``, counted as ``truncated``
a reply that names no candidate                        ``None``, counted as ``unparseable``
=====================================================  ==================================================

``failures`` counts the requests that ended without a ranking, by cause; ``retries`` counts the
attempts that were retried, by cause (``"429"``, ``"5xx"``, ``"408"``, ``"409"``, ``"no_response"`` for
timeouts and dropped connections).

The API key is read from an environment variable (``OPENAI_API_KEY`` by default, ``api_key_env=`` to
change) when the backend is made; it goes to the client and nowhere else: not in ``name``, ``repr``,
cache keys, error messages, logs or pickles. Servers on other hosts that need no key (a local vLLM)
work without one. ``name`` holds the full base URL (scheme, host, port, path), so answers from two
servers never share cache entries.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlsplit

from rec_gym.llm.prompts import render_prompt
from rec_gym.llm.protocol import BackendConfigError, BackendUnavailable, GenerateRequest, RankRequest, Ranking

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRIED_STATUSES = frozenset({408, 409, 429})
STATUS_ADVICE = {401: "the API key was refused", 403: "the API key may not use this model or endpoint",
                 404: "no such endpoint or model"}
BODY_SHOWN = 200  # characters of an error body quoted in a message

# The attempts of the request the current asyncio task is sending: one cause per attempt
# (``"no_response"`` until a response arrives), filled by the HTTP client's event hooks.
_ATTEMPTS: contextvars.ContextVar[list[str]] = contextvars.ContextVar("rec_gym_openai_attempts")


def _status_cause(status: int) -> str:
    return "5xx" if status >= 500 else str(status)


@dataclass
class _Outcome:
    """What one chat request ended with: ``text`` (or ``None`` and ``problem``), or no answer at all."""

    text: str | None = None
    problem: str = ""
    unanswered: str = ""  # the cause, when the request never got an answer
    config_error: str = ""  # the message, when the server refused the request for good


class OpenAIBackend:
    """Rank candidates with a chat model behind an OpenAI-compatible HTTP API.

    Args:
        model: the model name the server knows (``"gpt-4o-mini-2024-07-18"``, ``"Qwen/Qwen2.5-7B-Instruct"``).
        base_url: the API root, up to and including ``/v1`` (default: ``$OPENAI_BASE_URL``, else OpenAI's).
        api_key_env: name of the environment variable holding the key.
        concurrency: requests in flight at once.
        timeout: seconds to wait for one attempt before it counts as timed out.
        max_retries: retries per request after the first attempt (the client's backoff between them).
        max_tokens: reply budget (ten titles need about 150-250 tokens).
        temperature: sampling temperature; 0 for the most repeatable rankings.
        request_params: more JSON fields for the request body (e.g. ``{"seed": 0}``, or
            ``{"max_tokens": None, "max_completion_tokens": 512}``; ``None`` removes a field).

    Attributes:
        name: ``openai:<model>@<base_url>(max_tokens=...,temperature=...)``, never the key.
        failures, retries: counters by cause (see the module docstring).
    """

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 6, max_tokens: int = 512,
                 temperature: float = 0.0, request_params: dict[str, Any] | None = None) -> None:
        if not model:
            raise ValueError('empty model name; use "openai:<model>", e.g. "openai:gpt-4o-mini"')
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        url = urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url={base_url!r} is not an http(s) URL like {DEFAULT_BASE_URL!r}")
        if url.username or url.password or url.query:
            raise ValueError("base_url must not carry credentials or a query string; put the key in the environment "
                             f"variable named by api_key_env (now {api_key_env!r})")
        self.model = model
        self.base_url = f"{url.scheme}://{url.netloc}{url.path}"
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        if self._api_key is None and url.hostname.endswith("openai.com"):
            raise ValueError(f"{self.base_url} needs an API key: set the environment variable {api_key_env} "
                             "(or name another variable with api_key_env=)")
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.params: dict[str, Any] = {"temperature": float(temperature), "max_tokens": int(max_tokens)}
        for key, value in (request_params or {}).items():
            if value is None:
                self.params.pop(key, None)
            else:
                self.params[key] = value
        shown = ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(self.params.items()))
        self.name = f"openai:{model}@{self.base_url}({shown})"
        self.failures: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.name!r}, concurrency={self.concurrency})"

    def __getstate__(self) -> dict[str, Any]:
        # The key stays in this process; a copy re-reads it from the environment.
        return {k: v for k, v in self.__dict__.items() if k != "_api_key"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._api_key = os.environ.get(self.api_key_env) or None

    def close(self) -> None:
        """Nothing stays open between calls (each call opens and closes its own client)."""

    # ----------------------------------------------------------------------------------------- HTTP
    def _client(self) -> Any:
        import openai

        async def on_request(request: Any) -> None:
            attempts = _ATTEMPTS.get(None)
            if attempts is not None:
                attempts.append("no_response")

        async def on_response(response: Any) -> None:
            attempts = _ATTEMPTS.get(None)
            # A 2xx whose body is then cut off is retried too: that attempt stays "no_response".
            if attempts and response.status_code >= 300:
                attempts[-1] = _status_cause(response.status_code)

        http_client = openai.DefaultAsyncHttpxClient(event_hooks={"request": [on_request], "response": [on_response]},
                                                     follow_redirects=False)
        # A local server needs no key, but the client insists on one; this placeholder is sent instead.
        return openai.AsyncOpenAI(api_key=self._api_key or "no-key", base_url=self.base_url, timeout=self.timeout,
                                  max_retries=self.max_retries, http_client=http_client)

    async def _complete(self, client: Any, messages: list[dict[str, str]], params: dict[str, Any],
                        gate: asyncio.Semaphore, stop: asyncio.Event, allow_truncated: bool) -> _Outcome:
        import openai

        async with gate:
            if stop.is_set():
                return _Outcome(unanswered="cancelled")
            attempts: list[str] = []
            _ATTEMPTS.set(attempts)
            outcome = _Outcome()
            try:
                raw = await client.chat.completions.with_raw_response.create(model=self.model, messages=messages,
                                                                             extra_body=params)
                outcome.text, outcome.problem = self._content(raw.content, allow_truncated)
            except openai.APITimeoutError:
                outcome.unanswered = "timeout"
            except openai.APIConnectionError:
                outcome.unanswered = "connection"
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status in RETRIED_STATUSES or status >= 500:
                    outcome.unanswered = _status_cause(status)
                else:
                    outcome.config_error = self._refusal(status, exc.response)
                    stop.set()
            # Every attempt but the last was retried; the last one is the outcome itself.
            for cause in attempts[:-1]:
                self._count(self.retries, cause)
            if outcome.unanswered:
                self._count(self.failures, f"unanswered:{outcome.unanswered}")
            elif outcome.problem:
                self._count(self.failures, outcome.problem)
            return outcome

    def _refusal(self, status: int, response: Any) -> str:
        body = response.text[:BODY_SHOWN].strip() if response is not None else ""
        where = f"{self.base_url} answered HTTP {status} for model {self.model!r}"
        if 300 <= status < 400:
            location = response.headers.get("location", "") if response is not None else ""
            return (f"{where}: a redirect{f' to {location}' if location else ''}, which is not followed; set base_url "
                    "to the address the server names. Nothing was stored")
        advice = STATUS_ADVICE.get(status, "the server refuses this request")
        return (f"{where}: {advice} ({body!r}); check base_url, the model name, the key in ${self.api_key_env} and "
                "request_params. Nothing was stored")

    @staticmethod
    def _content(raw: bytes, allow_truncated: bool = False) -> tuple[str | None, str]:
        """``(text, problem)``: the assistant text of a chat-completion body, or ``None`` and why there is none."""
        try:
            choice = json.loads(raw)["choices"][0]
            text = choice["message"]["content"]
            finish = choice.get("finish_reason")
        except (ValueError, UnicodeDecodeError, KeyError, IndexError, TypeError, AttributeError):
            return None, "malformed"
        if text is not None and not isinstance(text, str):
            return None, "malformed"
        if finish == "length" and not allow_truncated:
            return None, "truncated"
        if not text or not text.strip():
            return None, "empty"
        return text, ""

    def _count(self, counter: Counter[str], cause: str) -> None:
        counter[cause] += 1  # only the event loop's thread writes

    def _run(self, conversations: Sequence[list[dict[str, str]]], params: "dict[str, Any] | Sequence[dict[str, Any]]",
             allow_truncated: bool = False) -> list[_Outcome]:
        """Send every conversation (at most ``concurrency`` at once) with ``params`` (one dict for all, or one
        per conversation); raise at the first refused one."""
        per_request = [params] * len(conversations) if isinstance(params, dict) else list(params)

        async def run_all() -> list[_Outcome]:
            gate, stop = asyncio.Semaphore(self.concurrency), asyncio.Event()
            async with self._client() as client:
                return list(await asyncio.gather(*(self._complete(client, m, p, gate, stop, allow_truncated)
                                                   for m, p in zip(conversations, per_request))))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            outcomes = asyncio.run(run_all())
        else:  # called from inside an event loop (a notebook): run on a thread of its own
            with ThreadPoolExecutor(max_workers=1) as pool:
                outcomes = pool.submit(asyncio.run, run_all()).result()
        refused = next((o.config_error for o in outcomes if o.config_error), "")
        if refused:
            raise BackendConfigError(refused)
        return outcomes

    def _unavailable(self, outcomes: Sequence[_Outcome], answers: list[Any]) -> BackendUnavailable:
        unsettled = {i for i, o in enumerate(outcomes) if o.unanswered}
        causes = Counter(outcomes[i].unanswered for i in unsettled)
        shown = ", ".join(f"{c}: {n}" for c, n in sorted(causes.items()))
        return BackendUnavailable(
            f"{self.base_url} gave no answer to {len(unsettled)} of {len(outcomes)} request(s) for model "
            f"{self.model!r} after {self.max_retries} retries each ({shown}); nothing was stored for them, and the same "
            "call succeeds once the server answers again", answers, unsettled, dict(causes))

    # ----------------------------------------------------------------------------------------- protocol
    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """Candidate positions best first per request (the parsed top list), ``None`` where the reply ranks nothing.

        Raises :class:`~rec_gym.llm.protocol.BackendUnavailable` (carrying the other requests' rankings)
        when some request got no answer, and :class:`~rec_gym.llm.protocol.BackendConfigError` when the
        server refused one.
        """
        from rec_gym.llm.parsing import parse_ranking

        if not requests:
            return []
        outcomes = self._run([[{"role": "user", "content": render_prompt(r)}] for r in requests], self.params)
        rankings: list[Ranking] = []
        for request, outcome in zip(requests, outcomes):
            ranking = parse_ranking(outcome.text, [c.title for c in request.candidates]) if outcome.text else None
            if outcome.text and not ranking:
                self._count(self.failures, "unparseable")
            rankings.append(ranking or None)
        if any(o.unanswered for o in outcomes):
            raise self._unavailable(outcomes, rankings)
        return rankings

    def write(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One reply per request, sent concurrently (the :class:`~rec_gym.llm.protocol.WriterBackend` interface).

        Each request's temperature and token budget replace the backend's; a sampled request also sends
        ``seed`` (derived from its cache key), which servers that support it use to make sample ``k``
        reproducible. A reply cut by the token budget is kept as it is.

        Raises :class:`~rec_gym.llm.protocol.BackendUnavailable` (with the other replies) when some request
        got no answer, and :class:`~rec_gym.llm.protocol.BackendConfigError` when the server refused one.
        """
        from rec_gym.llm.response_cache import generation_key

        if not requests:
            return []
        budget_key = "max_completion_tokens" if "max_completion_tokens" in self.params else "max_tokens"
        params = []
        for r in requests:
            p = {**self.params, "temperature": float(r.temperature), budget_key: int(r.max_new_tokens)}
            if r.temperature > 0:
                p["seed"] = int(generation_key(self.name, r)[:12], 16)
            params.append(p)
        outcomes = self._run([r.as_dicts() for r in requests], params, allow_truncated=True)
        if any(o.problem == "malformed" for o in outcomes):
            raise ValueError(f"{self.base_url} answered with a body that is not a chat completion")
        texts = [o.text or "" for o in outcomes]
        if any(o.unanswered for o in outcomes):
            raise self._unavailable(outcomes, [None if o.unanswered else t for o, t in zip(outcomes, texts)])
        return texts

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int = 256) -> str:
        """The assistant's reply to chat ``messages`` (``""`` when empty or cut by the token budget's edge).

        Raises :class:`~rec_gym.llm.protocol.BackendUnavailable` when no answer arrived, and
        :class:`~rec_gym.llm.protocol.BackendConfigError` when the server refused the request.
        """
        params = dict(self.params)
        params["max_completion_tokens" if "max_completion_tokens" in params else "max_tokens"] = int(max_new_tokens)
        outcome, = self._run([messages], params, allow_truncated=True)
        if outcome.unanswered:
            raise self._unavailable([outcome], [None])
        if outcome.problem == "malformed":
            raise ValueError(f"{self.base_url} answered with a body that is not a chat completion")
        return outcome.text or ""
