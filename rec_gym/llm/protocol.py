"""The one interface every LLM backend implements.

A backend ranks candidate sets. ``rank`` takes a batch of :class:`RankRequest` and returns, for
each, the candidate positions (0-based indices into ``request.candidates``) best first. A list may
be shorter than the candidate set (an LLM that names only its top 10); ``None`` means the backend
produced no usable ranking for that request (an empty or garbled reply), which the environment
records as the target not being ranked.

``name`` identifies the backend, model and revision; it goes into every cache key and every
feedback table's provenance, so two backends that can rank differently must have different names.

Settled and unsettled: a ranking (or ``None``, "the model replied and its reply ranks nothing") is an
answer and may be stored. A request that never reached the model, or whose reply never arrived
(connection refused, timeouts, 5xx after retries), has no answer: a backend raises
:class:`BackendUnavailable` for it, carrying the answers of the other requests of the call, and
nothing is stored for it anywhere. A request the server refuses for reasons that retrying cannot fix
(a wrong URL, model or key; HTTP 4xx) raises :class:`BackendConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from rec_gym.data.types import Item


@dataclass(frozen=True)
class RankRequest:
    """One prompt: a session's history, its candidate set in prompt order, and an optional hint."""

    history: tuple[Item, ...]
    candidates: tuple[Item, ...]
    hint: str | None = None
    domain: str = "movie"

    def with_hint(self, hint: str | None) -> "RankRequest":
        return RankRequest(self.history, self.candidates, hint, self.domain)


Ranking = list[int] | None


class BackendUnavailable(ConnectionError):
    """Some requests of a call never got an answer; the others' answers are in ``rankings``.

    Attributes:
        rankings: one entry per request of the call, as ``rank`` would have returned them; entries
            whose index is in ``unsettled`` are ``None`` and mean nothing.
        unsettled: indices of the requests that got no answer.
        causes: how many of them failed for each cause (``"timeout"``, ``"connection"``, ``"5xx"``, ...).
    """

    def __init__(self, message: str, rankings: "list[Ranking]", unsettled: "frozenset[int] | set[int]",
                 causes: "dict[str, int] | None" = None) -> None:
        super().__init__(message)
        self.rankings = list(rankings)
        self.unsettled = frozenset(unsettled)
        self.causes = dict(causes or {})


class BackendConfigError(RuntimeError):
    """The backend refused a request in a way retrying cannot fix (wrong URL, model, key or parameters)."""


@runtime_checkable
class LLMBackend(Protocol):
    """What ``llm=`` accepts besides a spec string: any object with these two members."""

    name: str

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """Candidate positions best first, one list (or ``None``) per request, in request order."""
        ...


def target_rank(ranking: Ranking, target_pos: int) -> int:
    """1-based rank of the candidate at ``target_pos`` in ``ranking``; 0 when it is absent."""
    if not ranking:
        return 0
    for rank, pos in enumerate(ranking, start=1):
        if pos == target_pos:
            return rank
    return 0


Message = tuple[str, str]  # (role, content), role one of "system", "user", "assistant"


@dataclass(frozen=True)
class GenerateRequest:
    """One conversation for the model to continue: the generation protocol beside ranking.

    Both methods need the frozen LLM to write: Re2LLM's reflection writes hints, RLRF4Rec's LLM writes
    preference texts. A request is a pure function of its fields, so its reply is cached under
    :func:`~rec_gym.llm.response_cache.generation_key` like a ranking is.

    Attributes:
        messages: the chat turns, ``(role, content)`` pairs, ending with a user turn.
        purpose: what the text is for (``"reflect"``, ``"dedup"``, ``"preference"``, ``"chat"``); the
            simulated backend writes by purpose, real models only see ``messages``.
        template_version: version of the prompt template that rendered ``messages``; part of the key.
        max_new_tokens: the longest reply, in tokens.
        temperature: 0 for greedy decoding; above 0, sampling.
        sample: which of several samples drawn at the same temperature (0, 1, ...); part of the key,
            so N samples are N cached entries, each reproducible where the engine takes a seed.
        context: structured facts behind the messages (the session's items, the true item, ...) that a
            simulated writer reads. Not part of the key and never sent to a model: the messages already
            say everything a model may know.
    """

    messages: tuple[Message, ...]
    purpose: str = "chat"
    template_version: str = ""
    max_new_tokens: int = 256
    temperature: float = 0.0
    sample: int = 0
    context: "Mapping[str, Any] | None" = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        for role, content in self.messages:
            if role not in ("system", "user", "assistant") or not isinstance(content, str):
                raise ValueError(f"bad chat message ({role!r}, {type(content).__name__}): expected (role, text) with "
                                 "role 'system', 'user' or 'assistant'")
        if not self.messages or self.messages[-1][0] != "user":
            raise ValueError("a GenerateRequest needs at least one message and must end with a user turn")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @classmethod
    def chat(cls, messages: "Sequence[Mapping[str, str]] | Sequence[Message]", **fields: Any) -> "GenerateRequest":
        """From OpenAI-style ``[{"role": ..., "content": ...}]`` dicts or ``(role, content)`` pairs."""
        turns = tuple((m["role"], m["content"]) if isinstance(m, Mapping) else (m[0], m[1]) for m in messages)
        return cls(turns, **fields)

    def as_dicts(self) -> list[dict[str, str]]:
        """The messages as OpenAI-style dicts."""
        return [{"role": role, "content": content} for role, content in self.messages]

    def then(self, reply: str, user: str, **changes: Any) -> "GenerateRequest":
        """The next turn of the same conversation: ``reply`` as the assistant's, then the new ``user`` message."""
        return replace(self, messages=self.messages + (("assistant", reply), ("user", user)), **changes)


@runtime_checkable
class WriterBackend(Protocol):
    """A backend that also writes free text: ``write`` returns one reply per :class:`GenerateRequest`.

    The settled/unsettled rule is the ranking protocol's: a reply (possibly ``""``) is an answer; a
    request that got none makes ``write`` raise :class:`BackendUnavailable`, whose ``rankings`` then
    hold the other requests' replies.
    """

    name: str

    def write(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One reply per request, in request order."""
        ...


def can_write(backend: object) -> bool:
    """Whether ``backend`` implements :class:`WriterBackend` (``simulated``, ``hf:``, ``openai:`` do)."""
    # A wrapper (the response cache) says through ``writes`` whether the backend it wraps can.
    return callable(getattr(backend, "write", None)) and bool(getattr(backend, "writes", True))


@runtime_checkable
class ChatBackend(Protocol):
    """A backend with a one-conversation convenience: ``generate(messages) -> text`` (greedy)."""

    name: str

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int = 256) -> str:
        ...
