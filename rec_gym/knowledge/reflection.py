"""The reflection conversation and the de-duplication question, defined once.

Re2LLM's reflective exploration holds one three-turn conversation per error session (a training
session whose top-10 list misses the true item):

1. the ranking prompt, the model's own answer, and the news that none of its items is the true one:
   what might its mistakes be? (stage ``"reflect"``)
2. the true item, and a request to analyse from many aspects why it was missed (stage ``"analyse"``);
3. a request for short imperative hints, one per point of the analysis, that would help an AI try
   again, without naming the true item (stage ``"hint"``).

Every turn is a :class:`~rec_gym.llm.protocol.GenerateRequest` with purpose ``"reflect"``, and the
de-duplication question one with purpose ``"dedup"``; :data:`REFLECTION_TEMPLATE_VERSION` goes into
their cache keys. ``request.context`` carries the session's facts for the simulated writer
(:mod:`rec_gym.llm.simulated_reflection`); a model sees only the messages.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from rec_gym.data.types import Item
from rec_gym.knowledge.extraction import strip_reasoning
from rec_gym.llm.prompts import render_prompt
from rec_gym.llm.protocol import GenerateRequest, RankRequest

REFLECTION_TEMPLATE_VERSION = "re2llm-reflect-v1"
STAGES = ("reflect", "analyse", "hint")
TOP_K = 10

_NOUN = {"movie": ("movie", "movies", "watched"), "game": ("video game", "video games", "purchased")}

REFLECT_TURN = ("None of the {plural} you recommended is the one I {verb} next. Think about your recommendations: "
                "what might your mistakes be?")
ANALYSE_TURN = ("The {noun} I {verb} next is: {target}. Analyse, from as many aspects as you can (genre, release "
                "period, popularity, creator, series, likeness to my most recent {noun}, ...), why you did not "
                "recommend it.")
HINT_TURN = ("Based on your analysis, write short imperative hints, one for each point of your analysis, that would "
             "help an AI recommender do better on sessions like mine if it tried again. Each hint must be general: "
             "do not name the {noun} I {verb} next or any other title. List the hints in numbered bullet points.")
DEDUP_TURN = ("Here are two hints for an AI that recommends {plural}.\nHint A: {first}\nHint B: {second}\n"
              "Do they convey the same idea? Answer yes or no.")


def answer_text(ranking: Sequence[int] | None, candidates: Sequence[Item], k: int = TOP_K) -> str:
    """The model's answer as it would have written it: its top ``k`` candidates as a numbered list."""
    if not ranking:
        return "I cannot recommend anything from this candidate set."
    return "\n".join(f"{n}. {candidates[pos].title}" for n, pos in enumerate(list(ranking)[:k], start=1))


def reflection_turns(request: RankRequest, ranking: Sequence[int] | None, target_pos: int,
                     max_new_tokens: int = 512) -> GenerateRequest:
    """The first turn of the conversation for the session of ``request`` (no hint); see the module docstring.

    Each later turn is ``previous.then(reply, next_turn(...), context=...)`` (:func:`next_turn`).
    """
    noun, plural, verb = _NOUN[request.domain]
    context = _context(request, ranking, target_pos, "reflect")
    return GenerateRequest((("user", render_prompt(request)), ("assistant", answer_text(ranking, request.candidates)),
                            ("user", REFLECT_TURN.format(plural=plural, verb=verb))),
                           purpose="reflect", template_version=REFLECTION_TEMPLATE_VERSION,
                           max_new_tokens=max_new_tokens, context=context)


def next_turn(previous: GenerateRequest, reply: str, stage: str) -> GenerateRequest:
    """The conversation ``previous`` continued by the model's ``reply`` and the user turn of ``stage``."""
    context = dict(previous.context or {})
    noun, plural, verb = _NOUN[context["domain"]]
    if stage == "analyse":
        text = ANALYSE_TURN.format(noun=noun, verb=verb, target=context["candidates"][context["target_pos"]].title)
    elif stage == "hint":
        text = HINT_TURN.format(noun=noun, verb=verb)
    else:
        raise ValueError(f"stage {stage!r}: the turns after the first are 'analyse' and 'hint'")
    context["stage"] = stage
    return previous.then(reply, text, context=context)


def dedup_request(new: str, existing: str, domain: str = "movie", max_new_tokens: int = 16) -> GenerateRequest:
    """The yes/no question "do these two hints convey the same idea?" (purpose ``"dedup"``)."""
    plural = _NOUN[domain][1]
    return GenerateRequest((("user", DEDUP_TURN.format(plural=plural, first=new, second=existing)),),
                           purpose="dedup", template_version=REFLECTION_TEMPLATE_VERSION,
                           max_new_tokens=max_new_tokens, context={"first": new, "second": existing})


def parse_yes_no(reply: str) -> bool | None:
    """``True`` for a reply that answers yes, ``False`` for no, ``None`` when it says neither first."""
    text = strip_reasoning(reply).lower()
    match = re.search(r"\b(yes|no)\b", text)
    return None if match is None else match.group(1) == "yes"


def _context(request: RankRequest, ranking: Sequence[int] | None, target_pos: int, stage: str) -> dict[str, Any]:
    return {"stage": stage, "history": request.history, "candidates": request.candidates,
            "ranking": list(ranking or []), "target_pos": int(target_pos), "domain": request.domain}
