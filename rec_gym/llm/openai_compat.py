"""``openai:`` backend: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Each request sends the paper's prompt (:func:`rec_gym.llm.prompts.render_prompt`) as one user turn to
``<base_url>/chat/completions`` and reads the numbered top-10 reply with
:func:`rec_gym.llm.parsing.parse_ranking`. Only the standard library is used (``http.client`` on a
bounded pool of threads, one keep-alive connection per thread).

Failures, and what becomes of them:

=====================================================  ==================================================
what happened                                          what ``rank`` does
=====================================================  ==================================================
timeout, dropped or reset connection, cut-off body     retried (exponential backoff with jitter)
HTTP 429                                               retried after ``Retry-After`` (or the backoff)
HTTP 5xx, 408, 409                                     retried (backoff)
still failing after ``max_retries`` retries            ``None``, counted as ``gave_up``; listed in ``unsettled``
HTTP 401, 403, 404                                     raises: wrong key, base_url or model name
other HTTP 4xx (e.g. prompt longer than the context)   ``None``, counted as ``http_<status>``
empty reply / body that is not a chat completion       ``None``, counted as ``empty`` / ``malformed``
reply cut by ``max_tokens`` (``finish_reason=length``)  ``None``, counted as ``truncated``
reply that names no candidate                          ``None``, counted as ``unparseable``
=====================================================  ==================================================

``failures`` and ``retries`` are running counters (dicts). A ``None`` listed in ``unsettled`` (the
indices, within the last ``rank`` call, of requests that never got an answer) says nothing about the
model, so :class:`~rec_gym.llm.response_cache.CachedBackend` does not store it.

The API key is read from an environment variable (``OPENAI_API_KEY`` by default, ``api_key_env=`` to
change) when the backend is made; it is sent in the ``Authorization`` header and nowhere else: not in
``name``, ``repr``, cache keys, error messages, logs or pickles. Servers on other hosts that need no
key (a local vLLM) work without one.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import urlsplit

from rec_gym.llm.prompts import render_prompt
from rec_gym.llm.protocol import RankRequest, Ranking

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429})
FATAL_STATUSES = {401: "the API key was refused", 403: "the API key may not use this model or endpoint",
                  404: "no such endpoint or model"}


class _GaveUp(Exception):
    """Every attempt of one request failed in a way worth retrying."""


class OpenAIBackend:
    """Rank candidates with a chat model behind an OpenAI-compatible HTTP API.

    Args:
        model: the model name the server knows (``"gpt-4o-mini-2024-07-18"``, ``"Qwen/Qwen2.5-7B-Instruct"``).
        base_url: the API root, up to and including ``/v1``.
        api_key_env: name of the environment variable holding the key.
        concurrency: requests in flight at once (threads).
        timeout: seconds to wait for a connection or a reply before retrying.
        max_retries: retries per request after the first attempt.
        backoff: first backoff in seconds; attempt ``k`` waits a random 50-100 % of ``backoff * 2**k``.
        max_backoff: cap of one backoff wait, seconds (a server's ``Retry-After`` is honoured up to
            ``max_retry_after``).
        max_retry_after: the longest ``Retry-After`` (seconds) honoured as given.
        max_tokens: reply budget (ten titles need about 150-250 tokens).
        temperature: sampling temperature; 0 for the most repeatable rankings.
        request_params: more JSON fields for the request body (e.g. ``{"seed": 0}``, or
            ``{"max_tokens": None, "max_completion_tokens": 512}``; ``None`` removes a field).

    Attributes:
        name: ``openai:<model>@<host/path>(temperature=...,max_tokens=...)``, never the key.
        failures, retries: counters by reason (see the module docstring).
        unsettled: indices, in the last ``rank`` call, of requests that never got an answer.
    """

    def __init__(self, model: str, base_url: str = DEFAULT_BASE_URL, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 6, backoff: float = 0.5,
                 max_backoff: float = 30.0, max_retry_after: float = 120.0, max_tokens: int = 512,
                 temperature: float = 0.0, request_params: dict[str, Any] | None = None) -> None:
        if not model:
            raise ValueError('empty model name; use "openai:<model>", e.g. "openai:gpt-4o-mini"')
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        url = urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url={base_url!r} is not an http(s) URL like {DEFAULT_BASE_URL!r}")
        if url.username or url.password or url.query:
            raise ValueError("base_url must not carry credentials or a query string; put the key in the environment "
                             f"variable named by api_key_env (now {api_key_env!r})")
        self.model = model
        self.base_url = f"{url.scheme}://{url.netloc}{url.path}"
        self._scheme, self._host, self._port = url.scheme, url.hostname, url.port
        self._path = url.path + "/chat/completions"
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        if self._api_key is None and url.hostname.endswith("openai.com"):
            raise ValueError(f"{self.base_url} needs an API key: set the environment variable {api_key_env} "
                             "(or name another variable with api_key_env=)")
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_retry_after = float(max_retry_after)
        self.params: dict[str, Any] = {"temperature": float(temperature), "max_tokens": int(max_tokens)}
        for key, value in (request_params or {}).items():
            if value is None:
                self.params.pop(key, None)
            else:
                self.params[key] = value
        shown = ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(self.params.items()))
        self.name = f"openai:{model}@{url.hostname}{f':{url.port}' if url.port else ''}{url.path}({shown})"
        self.failures: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.unsettled: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.name!r}, concurrency={self.concurrency})"

    def __getstate__(self) -> dict[str, Any]:
        # The key, threads and sockets stay in this process; a copy re-reads the key from the environment.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_api_key", "_lock", "_local", "_connections", "_pool")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._api_key = os.environ.get(self.api_key_env) or None
        self._lock, self._local, self._connections, self._pool = threading.Lock(), threading.local(), [], None

    def close(self) -> None:
        """Stop the worker threads and close their connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # ----------------------------------------------------------------------------------------- HTTP
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._scheme == "https":
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)

    def _post(self, body: bytes) -> tuple[int, http.client.HTTPResponse, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            self._drop_connection()
            raise
        if response.will_close:
            self._drop_connection()
        return response.status, response, data

    def _retry_after(self, response: http.client.HTTPResponse) -> float | None:
        """Seconds the server asks to wait (``retry-after-ms``, ``Retry-After`` as seconds or an HTTP date)."""
        millis = response.getheader("retry-after-ms")
        if millis:
            try:
                return max(0.0, float(millis) / 1000.0)
            except ValueError:
                pass
        value = response.getheader("Retry-After")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None

    def _count(self, counter: Counter[str], reason: str) -> None:
        with self._lock:
            counter[reason] += 1

    def _complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any] | None:
        """The parsed JSON reply to one chat request, ``None`` for a body that is not JSON; retries inside.

        Raises :class:`_GaveUp` when all attempts fail, ``RuntimeError`` for 401/403/404, and
        ``ValueError`` (``args[0]`` = ``"http_<status>"``) for other 4xx.
        """
        body = json.dumps({"model": self.model, "messages": messages, **params}).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            try:
                status, response, data = self._post(body)
            except (socket.timeout, TimeoutError):
                reason = "timeout"
            except (http.client.HTTPException, OSError):
                reason = "connection"
            else:
                if status == 200:
                    try:
                        return json.loads(data)
                    except (ValueError, UnicodeDecodeError):
                        return None
                if status in FATAL_STATUSES:
                    raise RuntimeError(f"{self.base_url} answered HTTP {status} for model {self.model!r}: "
                                       f"{FATAL_STATUSES[status]}; check base_url, the model name and the key in "
                                       f"${self.api_key_env}")
                if status not in RETRY_STATUSES and status < 500:
                    raise ValueError(f"http_{status}")
                reason = "429" if status == 429 else "5xx" if status >= 500 else str(status)
                if status == 429:
                    wait = self._retry_after(response)
            if attempt == self.max_retries:
                raise _GaveUp(reason)
            self._count(self.retries, reason)
            if wait is not None:
                time.sleep(min(wait, self.max_retry_after) + random.uniform(0.0, 0.05))
            else:
                time.sleep(min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    @staticmethod
    def _content(reply: dict[str, Any] | None, allow_truncated: bool = False) -> tuple[str | None, str]:
        """``(text, problem)``: the assistant text, or ``None`` and why there is none."""
        try:
            choice = reply["choices"][0]  # type: ignore[index]
            text = choice["message"]["content"]
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError):
            return None, "malformed"
        if text is not None and not isinstance(text, str):
            return None, "malformed"
        if finish == "length" and not allow_truncated:
            return None, "truncated"
        if not text or not text.strip():
            return None, "empty"
        return text, ""

    # ----------------------------------------------------------------------------------------- protocol
    def _rank_one(self, request: RankRequest) -> tuple[Ranking, bool]:
        from rec_gym.llm.parsing import parse_ranking

        try:
            reply = self._complete([{"role": "user", "content": render_prompt(request)}], self.params)
        except _GaveUp:
            self._count(self.failures, "gave_up")
            return None, True
        except ValueError as exc:
            self._count(self.failures, str(exc.args[0]))
            return None, False
        text, problem = self._content(reply)
        if text is None:
            self._count(self.failures, problem)
            return None, False
        ranking = parse_ranking(text, [c.title for c in request.candidates])
        if not ranking:
            self._count(self.failures, "unparseable")
            return None, False
        return ranking, False

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """Candidate positions best first per request (the parsed top list), ``None`` where there is none.

        Up to ``concurrency`` requests are in flight at once. Raises only for a refused key, an unknown
        model or endpoint (HTTP 401/403/404).
        """
        if not requests:
            self.unsettled = frozenset()
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="rec-gym-openai")
        results = list(self._pool.map(self._rank_one, requests))
        self.unsettled = frozenset(i for i, (_, unsettled) in enumerate(results) if unsettled)
        return [ranking for ranking, _ in results]

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int = 256) -> str:
        """The assistant's reply to chat ``messages`` (``""`` when empty); raises ``ConnectionError`` when
        the server cannot be reached after all retries."""
        params = dict(self.params)
        if "max_completion_tokens" in params:
            params["max_completion_tokens"] = int(max_new_tokens)
        else:
            params["max_tokens"] = int(max_new_tokens)
        try:
            reply = self._complete(messages, params)
        except _GaveUp as exc:
            raise ConnectionError(f"{self.base_url} did not answer after {self.max_retries + 1} attempts "
                                  f"(last problem: {exc.args[0]})") from None
        except ValueError as exc:
            raise ValueError(f"{self.base_url} refused the request ({exc.args[0]})") from None
        text, problem = self._content(reply, allow_truncated=True)
        if text is None and problem == "malformed":
            raise ValueError(f"{self.base_url} answered with a body that is not a chat completion")
        return text or ""
