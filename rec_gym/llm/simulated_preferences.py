"""Simulated preference writing (purpose ``"preference"``): a stand-in for an LLM, not a language model.

RLRF4Rec's LLM reads a user's history and writes the user's preferences. The simulated backend
writes them from the session's item attributes instead, so that the whole pipeline (generate,
score with the recommender, pick best and worst, train) runs offline and in the tests. Its texts
are templates filled with facts; they are not an LLM's behaviour and results obtained with them
say nothing about what an LLM would write.

What it writes, given ``request.context["history"]`` (the session's items, oldest first) and
``request.context["domain"]``:

- the factors the history supports: the most frequent genres, a creator who made at least 30% of
  the items, a decade holding at least 40% of them, the popularity level (mainstream or niche),
  shared title words (a series) and the most recent item;
- with ``temperature == 0``: always the faithful text naming every supported factor;
- with ``temperature > 0``, per ``request.sample`` (deterministic given the history, the sample,
  the temperature and the backend's seed), one of: a faithful text on a random subset of the
  supported factors (the usual case), an unhelpful text that names no factor, a wrong text (genres
  the history does not have, the opposite popularity level and another era), or a reply that breaks
  the required ``Factors: ... / Preference: ...`` structure. The higher the temperature (capped at
  1.5), the likelier the last three: at temperature 1, 60% faithful, 15% unhelpful, 15% wrong, 10%
  broken structure.

What each kind of text carries:

==========  ======================================================================================
kind        what it says
==========  ======================================================================================
faithful    facts of the history's items (above); in the synthetic world, with probability
            ``preference_fidelity`` (a kwarg of the simulated backend, default 0.5), also the
            session's latent preference, named first (:func:`latent_phrase`): the genre, decade,
            director or franchise most of the history shows, the obscure or blockbuster tier, or
            the director and era of the most recent item. The greedy text names it whenever the
            fidelity is above 0.
unhelpful   ``Factors: taste`` and a generic sentence true of anyone: no fact at all.
wrong       genres the history does not have, the opposite popularity level and an era it lacks.
broken      a faithful preference without the ``Factors:``/``Preference:`` structure.
==========  ======================================================================================

On real data (no latent preference is known, ``request.context["latent"]`` is absent) faithful texts
carry the history's facts only. The latent preference is what the generator of the synthetic world
drew; an LLM reading the titles could at best infer it, so ``preference_fidelity`` says how often the
simulated writer does. :func:`text_kind` tells which kind a reply is, for any writer's replies.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rec_gym.data.types import Item, title_words
from rec_gym.llm.preference_reply import parse_preference
from rec_gym.llm.protocol import GenerateRequest
from rec_gym.storage import stable_hash

# Keys cached replies: bumped whenever the texts this module writes change (v2: ties among title words;
# v3: faithful texts may name the synthetic session's latent preference).
VERSION = "preference-writer-v3"

if TYPE_CHECKING:
    from rec_gym.llm.simulated import SimulatedLLM

KINDS = ("faithful", "unhelpful", "wrong", "broken")
_BASE_PROBS = np.array([0.60, 0.15, 0.15, 0.10])
_GENERIC = ("enjoys a good story and well-made {noun}s", "likes {noun}s that are entertaining",
            "is open to many kinds of {noun}s and values quality", "wants something fun to pass the time")
_FALLBACK_GENRES = ("Documentary", "Western", "Musical", "Horror", "Animation", "Romance", "Sports", "Strategy",
                    "Racing", "Puzzle", "War", "Film-Noir")


def supported_factors(history: Sequence[Item], domain: str) -> dict[str, str]:
    """Factor name -> the phrase saying it, for each factor the history supports (see the module docstring)."""
    noun = "game" if domain == "game" else "movie"
    n = max(len(history), 1)
    factors: dict[str, str] = {}
    genres = Counter(g for item in history for g in item.genres)
    if genres:
        top = [g for g, _ in genres.most_common(3)]
        factors["genres"] = f"prefers {' and '.join(top[:2]) if len(top) < 3 else ', '.join(top[:2]) + ' and ' + top[2]} {noun}s"
    creators = Counter(item.creator for item in history if item.creator)
    if creators:
        creator, count = creators.most_common(1)[0]
        if count / n >= 0.3:
            maker = "developer" if domain == "game" else "director"
            factors["creators"] = f"returns to the same {maker}, {creator}"
    decades = Counter(item.year // 10 * 10 for item in history if item.year is not None)
    if decades:
        decade, count = decades.most_common(1)[0]
        if count / n >= 0.4:
            factors["era"] = f"favours releases from the same era, the {decade}s"
    if history:
        popularity = float(np.mean([item.popularity for item in history]))
        factors["popularity"] = (f"likes popular, mainstream {noun}s" if popularity >= 0.5
                                 else f"seeks out niche, lesser-known {noun}s")
    # Title words come as sets, whose order differs between processes: ties are broken alphabetically.
    words = Counter(w for item in history for w in sorted(title_words(item.title)))
    shared = [w for w, c in sorted(words.items(), key=lambda wc: (-wc[1], wc[0]))[:3] if c >= 2]
    if shared:
        factors["series"] = f"follows a series or franchise ({shared[0]})"
    if history:
        factors["recent"] = f"is most drawn to {noun}s like the most recent one, {history[-1].title}"
    return factors


def latent_phrase(history: Sequence[Item], latent: str, domain: str) -> tuple[str, str]:
    """``(factor name, phrase)`` naming a synthetic session's latent preference (a
    :data:`~rec_gym.data.synthetic.PREFERENCES` kind), its value read from the history, where most items show it."""
    noun = "game" if domain == "game" else "movie"
    last = history[-1]
    if latent == "genre":
        genre = Counter(g for item in history for g in item.genres).most_common(1)[0][0]
        return "genre", f"wants {genre} {noun}s above all"
    if latent == "era":
        decade = Counter(item.year // 10 * 10 for item in history if item.year is not None).most_common(1)[0][0]
        return "era", f"wants {noun}s of the {decade}s above all"
    if latent == "creator":
        creator = Counter(item.creator for item in history if item.creator).most_common(1)[0][0]
        return "creator", f"wants more by {creator} above all"
    if latent == "niche":
        return "popularity", f"wants obscure, niche {noun}s above all"
    if latent == "popular":
        return "popularity", f"wants blockbuster {noun}s above all"
    if latent == "franchise":
        words = Counter(w for item in history for w in sorted(title_words(item.title)))
        shared = sorted(words.items(), key=lambda wc: (-wc[1], wc[0]))[0][0]
        return "franchise", f"wants the next part of the {shared} franchise above all"
    era = f", from the {last.year // 10 * 10}s" if last.year is not None else ""
    return "recent", f"wants more by {last.creator or 'the same creator'} like the most recent one{era}, above all"


def _first(named: dict[str, str], factors: dict[str, str]) -> dict[str, str]:
    """``named`` first, then the factors it does not replace (a latent era replaces the history's era)."""
    return {**named, **{k: v for k, v in factors.items() if k not in named}}


def _render(factors: dict[str, str], domain: str) -> str:
    noun = "game" if domain == "game" else "movie"
    names = ", ".join(factors) or "none"
    body = "; ".join(factors.values()) or f"has no clear taste in {noun}s"
    return f"Factors: {names}\nPreference: The user {body}."


def write(llm: "SimulatedLLM", request: GenerateRequest) -> str:
    """One simulated preference reply for ``request`` (see the module docstring)."""
    context = request.context or {}
    history: Sequence[Item] = tuple(context.get("history") or ())
    domain = str(context.get("domain", "movie"))
    if not history:
        raise ValueError("the simulated preference writer needs request.context['history'] (the session's items); "
                         "build requests with rec_gym.recsys.preferences.preference_request")
    factors = supported_factors(history, domain)
    latent = context.get("latent")
    fidelity = float(getattr(llm, "preference_fidelity", 0.0))
    named = dict([latent_phrase(history, str(latent), domain)]) if latent else {}
    if request.temperature == 0:
        return _render(_first(named if fidelity > 0 else {}, factors), domain)
    rng = np.random.default_rng(int(stable_hash("preference", llm.seed, [i.item_id for i in history], request.sample,
                                                request.temperature), 16))
    # Drawn first, whenever there is a latent preference, so that the fidelity changes whether a text names
    # it, never which kind a sample is or which other factors it names (nor anything on real data).
    names_latent = bool(named) and rng.random() < fidelity
    heat = min(float(request.temperature), 1.5)
    probs = _BASE_PROBS * np.array([1.0, heat, heat, heat])
    kind = KINDS[int(rng.choice(len(KINDS), p=probs / probs.sum()))]
    noun = "game" if domain == "game" else "movie"
    if kind == "unhelpful":
        return f"Factors: taste\nPreference: The user {_GENERIC[int(rng.integers(len(_GENERIC)))].format(noun=noun)}."
    if kind == "wrong":
        present = {g for item in history for g in item.genres}
        absent = [g for g in _FALLBACK_GENRES if g not in present]
        picked = [absent[int(i)] for i in rng.choice(len(absent), size=min(2, len(absent)), replace=False)]
        popular = "popularity" in factors and "mainstream" in factors["popularity"]
        wrong = {"genres": f"prefers {' and '.join(picked)} {noun}s",
                 "popularity": f"seeks out niche, lesser-known {noun}s" if popular else f"likes popular, mainstream {noun}s",
                 "era": "favours releases from the same era, the " + ("1950s" if rng.random() < 0.5 else "2010s")}
        return _render(wrong, domain)
    names = list(factors)
    size = int(rng.integers(1, min(3, len(names)) + 1)) if names else 0
    chosen = sorted(rng.choice(len(names), size=size, replace=False).tolist()) if size else []
    text = _render(_first(named if names_latent else {}, {names[i]: factors[names[i]] for i in chosen}), domain)
    if kind == "broken":
        # The preference without its required structure: the kind of reply structure alignment rejects.
        return text.split("Preference: ", 1)[1].replace("The user", "I think this user", 1)
    return text


def _top_genres(history: Sequence[Item]) -> set[str]:
    """The genres the history supports: its three most common, and any tied with the third."""
    counts = Counter(g for item in history for g in item.genres).most_common()
    if not counts:
        return set()
    floor = counts[min(2, len(counts) - 1)][1]
    return {g for g, c in counts if c >= floor}


def _supported(statement: str, known: set[str], history: Sequence[Item], domain: str) -> bool:
    """Whether one statement is a fact of the history: one of the ``known`` phrases, or the genre or series
    statement naming supported values in another order or a subset of them."""
    if statement in known:
        return True
    noun = "game" if domain == "game" else "movie"
    genres = re.fullmatch(rf"prefers (.+) {noun}s", statement)
    if genres:
        named = re.split(r", | and ", genres.group(1))
        return len(set(named)) == len(named) and set(named) <= _top_genres(history)
    series = re.fullmatch(r"follows a series or franchise \((.+)\)", statement)
    if series:
        words = Counter(w for item in history for w in title_words(item.title))
        return words.get(series.group(1), 0) >= 2
    return False


def text_kind(reply: str, history: Sequence[Item], domain: str, latent: str | None = None) -> str:
    """Which of :data:`KINDS` a reply (any writer's) is, judged against the history's facts.

    ``broken``: it breaks the ``Factors:``/``Preference:`` structure. ``faithful``: every statement of
    its preference (``;``-separated) is a fact the history supports: a phrase of :func:`supported_factors`
    (genres named in any order or a subset of the three most common; any title word two items share), or
    the latent preference (:func:`latent_phrase`, when ``latent`` is given). ``unhelpful``: it states none of
    those and nothing else but generic taste (``Factors: taste``, or a preference naming no genre, decade,
    creator or title of the catalog's kind of facts). ``wrong``: anything else (a statement the history
    does not support).
    """
    parsed = parse_preference(reply)
    if parsed is None:
        return "broken"
    body = parsed.preference.strip()
    body = body[len("The user "):] if body.startswith("The user ") else body
    statements = [part.strip().rstrip(".").strip() for part in body.split(";") if part.strip().rstrip(".").strip()]
    known = set(supported_factors(history, domain).values())
    if latent:
        known.add(latent_phrase(history, latent, domain)[1])
    if statements and all(_supported(statement, known, history, domain) for statement in statements):
        return "faithful"
    noun = "game" if domain == "game" else "movie"
    generic = {g.format(noun=noun) for g in _GENERIC} | {f"has no clear taste in {noun}s"}
    if parsed.factors == ("taste",) or all(statement in generic for statement in statements):
        return "unhelpful"
    return "wrong"
