"""Simulated reflection and de-duplication replies for the simulated backend. A simulation, not a model.

:meth:`SimulatedLLM.write <rec_gym.llm.simulated.SimulatedLLM.write>` calls :func:`write` for requests
of purpose ``"reflect"`` (the three turns of Re2LLM's reflection conversation, told apart by
``request.context["stage"]``: ``"reflect"``, ``"analyse"``, ``"hint"``) and ``"dedup"`` (is hint A the
same idea as hint B?). The replies are written from ``request.context`` (the session's items, the
model's ranking, the true item) by fixed rules, so that the knowledge-base pipeline can be run and
tested with no model. Nothing here is an LLM's behaviour and no result obtained with it should be
reported as one.

What it simulates
-----------------
The "analysis" compares the true item's aspect values (:func:`~rec_gym.llm.simulated.aspect_features`)
with the mean over the model's top 10. The aspects where they differ most, with some seeded noise,
are the points of the analysis; each point's direction says which way the weight should move
(``popularity`` below the top 10 means "niche", ``newer`` below means "older", any other aspect below
means "rely less on it"). The hints then name those aspects in words the simulated ranker reads
(:data:`~rec_gym.llm.simulated.ASPECT_KEYWORDS`), in wording drawn from several templates, and in one of
several reply layouts (numbered, bulleted with bold labels, ``Hint N:`` lines, a reasoning block,
several sentences per point). Now and then one hint joins the two main points. Some points are deliberately poor: a generic hint
that names no aspect,
a hint naming the true item's genre, and now and then one that leaks the true title, so that
validation, leak rejection and de-duplication have work to do. Because the aspect estimate ignores the
ranker's weights and noise, a hint can still fail to fix its session.

De-duplication answers "yes" when both hints move the same aspects the same way
(:func:`~rec_gym.llm.simulated.hint_weights`) and name the same capitalised words (genres); hints that
move no aspect and name no genre are the same when they share most of their words.

Every choice is seeded by the conversation's opening (the session's prompt and answer), the
backend's ``seed`` and, for sampled requests, the sample index: the same request always gets the same
reply.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from rec_gym.llm.protocol import GenerateRequest
from rec_gym.llm.simulated import ASPECTS, BASE_WEIGHTS, aspect_features, hint_weights
from rec_gym.storage import stable_hash

if TYPE_CHECKING:
    from rec_gym.llm.simulated import SimulatedLLM

_DOMAIN_WORDS = {
    "movie": {"noun": "movie", "plural": "films", "verb": "watched", "creator": "director", "creators": "directors"},
    "game": {"noun": "game", "plural": "games", "verb": "played", "creator": "developer", "creators": "developers"},
}

# (aspect, direction) -> hint templates. Each names its aspect, and only it, in the ranker's keywords
# (tests/test_knowledge_simulated.py checks every one with hint_weights).
HINT_TEMPLATES: dict[tuple[str, int], tuple[str, ...]] = {
    ("genre", +1): ("Stay close to the genres that dominate the history.",
                    "Recommend {plural} of the genre the user keeps coming back to.",
                    "Weigh genre overlap with the history above everything else."),
    ("genre", -1): ("Do not stick to the genre of the history; this user explores.",
                    "Never let genre overlap decide the list on its own."),
    ("last_item", +1): ("Weight the most recent {noun} most and recommend what fits it.",
                        "Recommend {plural} similar to the last one the user {verb}.",
                        "Start from the previous {noun} in the history and find its closest match."),
    ("last_item", -1): ("Look at the whole history, not just the last one.",
                        "Do not anchor on the most recent {noun} alone."),
    ("era", +1): ("Favour {plural} from the same decade as the history.",
                  "Keep to the era the user's history comes from.",
                  "Match the release year of the history items."),
    ("era", -1): ("Do not restrict yourself to one era.",
                  "Never assume the user wants the same decade again."),
    ("newer", +1): ("Prefer recent releases and modern {plural}.",
                    "Lean towards newer {plural}.",
                    "Favour contemporary titles."),
    ("newer", -1): ("Prefer older, classic {plural}.",
                    "Look for vintage titles.",
                    "This user enjoys the classics."),
    ("popularity", +1): ("Prefer popular, widely seen {plural}.",
                         "Recommend mainstream hits.",
                         "Favour well-known titles that most people know."),
    ("popularity", -1): ("Look for hidden gems rather than blockbusters.",
                         "Prefer lesser-known, niche {plural}.",
                         "Favour underrated titles."),
    ("creator", +1): ("Recommend {plural} by the same {creators} the user follows.",
                      "Look at who made the history items and favour the same {creator}.",
                      "Give weight to the {creator} behind the {plural} in the history."),
    ("creator", -1): ("Do not follow the {creator} of the history so closely.",),
    ("franchise", +1): ("If a {noun} in the history has a sequel, recommend it.",
                        "Continue any series the user has started.",
                        "Favour the next part of a franchise in the history."),
    ("franchise", -1): ("Do not chase sequels.",),
}
NAMED_GENRE_TEMPLATES = ("Give {genre} titles more room in the list.", "Make space for {genre} {plural} near the top.")
GENERIC_HINTS = ("Think carefully about what the user would enjoy.", "Read the whole candidate list before answering.",
                 "Recommend the items that best suit this user's taste.", "Pay close attention to the user's preferences.")
LEAK_TEMPLATES = ("Put {title} near the top of the list.", "Recommend {title}.")
EXPLANATIONS = ("This is where my answer went wrong.", "That pattern was clear in this session.",
                "It would have changed my answer here.")

_LABELS = {"genre": "Genre", "last_item": "Most recent item", "era": "Release period", "newer": "Release date",
           "popularity": "Popularity", "creator": "Creator", "franchise": "Series"}
_ANALYSIS = {
    ("genre", +1): "{title} shares the genres of the history more than most of my picks did.",
    ("genre", -1): "{title} is off the history's main genres, and I kept to them too strictly.",
    ("last_item", +1): "{title} is close to the most recent item, which I underweighted.",
    ("last_item", -1): "{title} has little to do with the most recent item, which I overweighted.",
    ("era", +1): "{title} comes from the same period as the history; my picks were spread over other years.",
    ("era", -1): "{title} comes from another period than the history; I assumed the same years.",
    ("newer", +1): "{title} is newer than most of what I recommended.",
    ("newer", -1): "{title} is older than most of what I recommended.",
    ("popularity", +1): "{title} is more popular than my picks.",
    ("popularity", -1): "{title} is less popular than my picks; I leaned on well-known titles.",
    ("creator", +1): "{title} is by a creator the user already followed.",
    ("creator", -1): "{title} is by a different creator than the history's, which I favoured.",
    ("franchise", +1): "{title} continues a series from the history.",
    ("franchise", -1): "{title} belongs to no series of the history, but I chased series.",
}
_GENRE_WORD = re.compile(r"^[A-Za-z][A-Za-z-]*$")


def write(llm: "SimulatedLLM", request: GenerateRequest) -> str:
    """The simulated reply to ``request`` (purpose ``"reflect"`` or ``"dedup"``); see the module docstring."""
    context = request.context or {}
    if request.purpose == "dedup":
        return _dedup(llm, request, context)
    if request.purpose != "reflect":
        raise ValueError(f"simulated_reflection writes for purposes 'reflect' and 'dedup', not {request.purpose!r}")
    missing = [k for k in ("stage", "history", "candidates", "ranking", "target_pos", "domain") if k not in context]
    if missing:
        raise ValueError(f"a simulated reflection request needs context keys {missing}; build it with "
                         "rec_gym.knowledge.reflection.reflection_turns")
    opening = [list(m) for m in request.messages[:2]]
    sample = request.sample if request.temperature > 0 else 0
    points = _analysis(context, np.random.default_rng(_seed("reflect-points", llm.seed, opening, sample)))
    rng = np.random.default_rng(_seed("reflect-words", llm.seed, opening, sample, context["stage"]))
    words = dict(_DOMAIN_WORDS[context["domain"]])
    target = context["candidates"][context["target_pos"]]
    if context["stage"] == "reflect":
        return _reflect_reply(points, words, rng)
    if context["stage"] == "analyse":
        return _analyse_reply(points, target.title, rng)
    if context["stage"] == "hint":
        return _hint_reply(points, target, words, rng)
    raise ValueError(f"unknown reflection stage {context['stage']!r}; expected reflect, analyse or hint")


def _analysis(context: dict[str, Any], rng: np.random.Generator) -> list[tuple[str, Any]]:
    """The points of the analysis, in reply order: ``("aspect", (name, direction))``, ``("pair", (aspect point,
    aspect point))``, and the poor kinds ``("generic", None)``, ``("genre_name", genre)``, ``("leak", None)``."""
    history, candidates = context["history"], context["candidates"]
    feats = aspect_features(history, candidates)
    top = [p for p in context["ranking"][:10] if 0 <= p < len(candidates)] or list(range(len(candidates)))
    diff = feats[context["target_pos"]] - feats[top].mean(axis=0)
    # A rough reading of what went wrong: large differences, blurred by noise (the model is no oracle).
    salience = np.abs(diff) + rng.normal(0.0, 0.08, len(ASPECTS))
    order = np.argsort(-salience, kind="stable")
    n_points = int(rng.integers(2, 4))
    points: list[tuple[str, Any]] = [("aspect", (ASPECTS[a], 1 if diff[a] >= 0 else -1)) for a in order[:n_points]
                                     if abs(diff[a]) > 1e-9]
    if len(points) >= 2 and rng.random() < 0.3:
        points.append(("pair", (points[0][1], points[1][1])))  # one hint that joins the two main points
    genres = [g for g in candidates[context["target_pos"]].genres if _GENRE_WORD.match(g)]
    if genres and rng.random() < 0.35:
        points.insert(int(rng.integers(len(points) + 1)), ("genre_name", genres[int(rng.integers(len(genres)))]))
    if rng.random() < 0.3:
        points.insert(int(rng.integers(len(points) + 1)), ("generic", None))
    if rng.random() < 0.15:
        points.append(("leak", None))
    return points or [("generic", None)]


def _seed(*parts: Any) -> int:
    """A seed that is the same for the same parts in every process."""
    return int(stable_hash("simulated-reflection", *parts), 16)


def _choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _reflect_reply(points: list[tuple[str, Any]], words: dict[str, str], rng: np.random.Generator) -> str:
    causes = [f"I misjudged the {_LABELS[value[0]].lower()} of what the user wanted" for kind, value in points
              if kind == "aspect"]
    opening = _choice(rng, ("Looking back at my list, ", "On reflection, ", "I see a few possible mistakes. "))
    body = "; ".join(causes) if causes else "I may have read the user's history too loosely"
    return f"{opening}{body[0].upper()}{body[1:]}. I also may have trusted the obvious candidates too much."


def _analyse_reply(points: list[tuple[str, Any]], title: str, rng: np.random.Generator) -> str:
    lines = [_choice(rng, ("Here is my analysis:", "Several aspects explain the miss:", "Why I missed it:")), ""]
    n = 0
    for kind, value in points:
        if kind == "aspect":
            n += 1
            lines.append(f"{n}. {_LABELS[value[0]]}: " + _ANALYSIS[value].format(title=title))
        elif kind == "pair":
            n += 1
            lines.append(f"{n}. {_label(kind, value)}: both of the above together explain most of the miss.")
        elif kind == "genre_name":
            n += 1
            lines.append(f"{n}. Genre: {title} is a {value} title, which I did not favour.")
        elif kind == "generic":
            n += 1
            lines.append(f"{n}. Overall: I did not think about this user carefully enough.")
    return "\n".join(lines)


def join_hints(first: str, second: str) -> str:
    """One sentence that asks for both: ``"Prefer older films, and favour underrated titles."``."""
    return f"{first.rstrip('.')}, and {second[0].lower()}{second[1:]}"


def _label(kind: str, value: Any) -> str:
    if kind == "aspect":
        return _LABELS[value[0]]
    if kind == "pair":
        return f"{_LABELS[value[0][0]]} and {_LABELS[value[1][0]].lower()}"
    return "Genre" if kind == "genre_name" else "General"


def _hint_text(kind: str, value: Any, target: Any, words: dict[str, str], rng: np.random.Generator) -> str:
    if kind == "aspect":
        return _choice(rng, HINT_TEMPLATES[value]).format(**words)
    if kind == "pair":
        return join_hints(*(_choice(rng, HINT_TEMPLATES[v]).format(**words) for v in value))
    if kind == "genre_name":
        return _choice(rng, NAMED_GENRE_TEMPLATES).format(genre=value, **words)
    if kind == "leak":
        title = re.sub(r"\s*\(\d{4}\)\s*$", "", target.title)
        return _choice(rng, LEAK_TEMPLATES).format(title=title)
    return _choice(rng, GENERIC_HINTS)


def _hint_reply(points: list[tuple[str, Any]], target: Any, words: dict[str, str], rng: np.random.Generator) -> str:
    hints = [(kind, value, _hint_text(kind, value, target, words, rng)) for kind, value in points]
    layout = int(rng.integers(5))
    if layout == 0:  # a plain numbered list
        body = "\n".join(f"{n}. {h}" for n, (_k, _v, h) in enumerate(hints, start=1))
    elif layout == 1:  # bullets with bold labels, blank lines between
        labels = [_label(k, v) for k, v, _h in hints]
        body = "\n\n".join(f"- **{label}:** {h}" for label, (_k, _v, h) in zip(labels, hints))
    elif layout == 2:  # "Hint N:" lines
        body = "\n".join(f"Hint {n}: {h}" for n, (_k, _v, h) in enumerate(hints, start=1))
    elif layout == 3:  # a reasoning block, then numbered points of two sentences each
        body = ("<think>\nThe analysis lists what went wrong; each point becomes one hint.\n</think>\n\n"
                + "\n".join(f"{n}) {h} {_choice(rng, EXPLANATIONS)}" for n, (_k, _v, h) in enumerate(hints, start=1)))
    else:  # Markdown heading and bold numbered points wrapped over two lines
        body = "### Hints\n\n" + "\n".join(f"{n}. **{h.split(' ', 1)[0]}** {h.split(' ', 1)[1] if ' ' in h else ''}\n"
                                           f"   {_choice(rng, EXPLANATIONS)}" for n, (_k, _v, h) in enumerate(hints, start=1))
    opening = _choice(rng, ("Here are hints that could help:", "Hints for trying again:", "Sure."))
    closing = _choice(rng, ("I hope these help.", "These should make the next answer better.", ""))
    return f"{opening}\n\n{body}\n\n{closing}".strip()


def _signature(hint: str) -> tuple[frozenset[tuple[str, int]], frozenset[str]]:
    weights, _ = hint_weights(hint)
    moved = frozenset((a, 1 if weights[a] > BASE_WEIGHTS[a] else -1) for a in ASPECTS
                      if abs(weights[a] - BASE_WEIGHTS[a]) > 1e-9)
    # Capitalised words inside a sentence (genre names), not the first word of each sentence.
    named = frozenset(w for sentence in re.split(r"[.!?]\s+", hint)
                      for w in re.findall(r"[A-Za-z][A-Za-z-]*", sentence)[1:] if w[0].isupper())
    return moved, named


def _dedup(llm: "SimulatedLLM", request: GenerateRequest, context: dict[str, Any]) -> str:
    first, second = context.get("first"), context.get("second")
    if not isinstance(first, str) or not isinstance(second, str):
        raise ValueError("a simulated dedup request needs context {'first': hint, 'second': hint}; build it with "
                         "rec_gym.knowledge.reflection.dedup_request")
    (moved_a, named_a), (moved_b, named_b) = _signature(first), _signature(second)
    if moved_a or moved_b:
        same = moved_a == moved_b and named_a == named_b
    else:
        words_a, words_b = set(re.findall(r"[a-z']+", first.lower())), set(re.findall(r"[a-z']+", second.lower()))
        overlap = len(words_a & words_b) / max(len(words_a | words_b), 1)
        same = named_a == named_b and (bool(named_a) or overlap >= 0.5)
    rng = np.random.default_rng(_seed("dedup", llm.seed, first, second))
    if same:
        return _choice(rng, ("Yes.", "Yes, both ask for the same thing.", "Yes - they convey the same idea."))
    return _choice(rng, ("No.", "No, they point at different things.", "No - the ideas differ."))
