"""The Re2LLM prompt, defined once. ``TEMPLATE_VERSION`` goes into every cache key and table."""

from __future__ import annotations

from typing import Sequence

from rec_gym.llm.protocol import RankRequest

TEMPLATE_VERSION = "re2llm-rank-v1"

_WORDING = {
    "movie": ("I watched the following movies in order: ", "recommend a movie for me to watch next"),
    "game": ("I purchased the following video games in order: ", "recommend a video game for me to purchase next"),
}


def session_prefix(request: RankRequest) -> str:
    """The part of the prompt that every hint of a session shares (history and candidates)."""
    opening, ask = _WORDING[request.domain]
    history = "; ".join(item.title for item in request.history)
    candidates = "; ".join(item.title for item in request.candidates)
    return (
        f"{opening}{history}. Based on these interactions, {ask} from a candidate set: {candidates}. "
        "Please recommend from the candidate set. List the 10 recommendations in numbered bullet points."
    )


def hint_suffix(hint: str | None) -> str:
    return f" Hint: {hint}" if hint else ""


# How a prompt carries several hints: each appended as `` Hint: <hint>``, in sorted order, so a set of
# hints has one prompt whoever chose it and in whatever order. A one-hint set is the one-hint prompt.
HINT_SET_FORMAT = "hint-set-v1"


def combine_hints(hints: "Sequence[str] | frozenset[str]") -> str | None:
    """The hint text (for :class:`RankRequest`) that carries a set of hints: ``None`` for none.

    >>> render_hint = lambda hints: hint_suffix(combine_hints(hints))
    >>> render_hint(["Prefer classics.", "Consider the genre."])
    ' Hint: Consider the genre. Hint: Prefer classics.'
    """
    ordered = sorted({h.strip() for h in hints if h and h.strip()})
    return " Hint: ".join(ordered) if ordered else None


def render_prompt(request: RankRequest) -> str:
    """The full user prompt: the session prefix, then `` Hint: <hint>`` when a hint is given."""
    return session_prefix(request) + hint_suffix(request.hint)


# The one-forward-pass variant read by ``hf:`` backends: candidates carry labels, the reply is one label.
LABELLED_TEMPLATE_VERSION = "re2llm-rank-labelled-v1"
ANSWER_PREFIX = "Answer:"


def labelled_session_prefix(request: RankRequest, labels: Sequence[str]) -> str:
    """:func:`session_prefix` with candidate ``i`` listed on its own line as ``<labels[i]>. <title>``.

    It asks for the label of the best candidate, so the model's next-token distribution after the
    hint and :data:`ANSWER_PREFIX` ranks the whole candidate set at once.
    """
    if len(labels) != len(request.candidates):
        raise ValueError(f"got {len(labels)} labels for {len(request.candidates)} candidates; pass one label per candidate")
    opening, ask = _WORDING[request.domain]
    history = "; ".join(item.title for item in request.history)
    listing = "\n".join(f"{label}. {item.title}" for label, item in zip(labels, request.candidates))
    return (
        f"{opening}{history}. Based on these interactions, {ask} from a candidate set:\n{listing}\n"
        "Please recommend from the candidate set. Reply with the label of the best candidate only."
    )


def render_labelled_prompt(request: RankRequest, labels: Sequence[str]) -> str:
    """The full labelled user prompt: :func:`labelled_session_prefix`, then the hint."""
    return labelled_session_prefix(request, labels) + hint_suffix(request.hint)
