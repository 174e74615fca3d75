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

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

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


@runtime_checkable
class ChatBackend(Protocol):
    """Optional second interface: a backend that also writes free text (e.g. for reflective exploration).

    ``messages`` are OpenAI-style chat turns, ``[{"role": "user", "content": "..."}]``; the reply is the
    assistant's text (greedy where the engine allows it), at most ``max_new_tokens`` tokens long.
    """

    name: str

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int = 256) -> str:
        ...
