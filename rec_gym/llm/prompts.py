"""The Re2LLM prompt, defined once. ``TEMPLATE_VERSION`` goes into every cache key and table."""

from __future__ import annotations

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


def render_prompt(request: RankRequest) -> str:
    """The full user prompt: the session prefix, then `` Hint: <hint>`` when a hint is given."""
    return session_prefix(request) + hint_suffix(request.hint)
