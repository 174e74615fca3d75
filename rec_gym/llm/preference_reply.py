"""Reading a preference text: the two-line ``Factors:``/``Preference:`` structure RLRF4Rec's writer is asked for.

The writer's prompt (:mod:`rec_gym.recsys.preferences`) asks for::

    Factors: <comma-separated factors>
    Preference: <the user's preference>

:func:`parse_preference` is the one reader of that structure: the recommender, the DPO pairs and the
simulated writer's judge of its own texts all call it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STRUCTURE = re.compile(r"^\s*factors\s*:\s*(?P<factors>\S.*?)\s*\n+\s*preference\s*:\s*(?P<preference>\S.*?)\s*$",
                        re.IGNORECASE | re.DOTALL)
_REASONING = re.compile(r"<\s*(think|thinking|reasoning)\s*>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)


def without_reasoning(reply: str | None) -> str:
    """``reply`` without ``<think>``/``<thinking>``/``<reasoning>`` blocks, stripped: they are not the answer."""
    return _REASONING.sub("", reply or "").strip()


@dataclass(frozen=True)
class ParsedPreference:
    """A reply in the required structure: the factors it names and the preference it states."""

    factors: tuple[str, ...]
    preference: str


def parse_preference(reply: str) -> ParsedPreference | None:
    """The reply's factors and preference, or ``None`` when it breaks the ``Factors:``/``Preference:`` structure.

    >>> parse_preference("Factors: genres, era\\nPreference: Likes 1990s comedies.").factors
    ('genres', 'era')
    >>> parse_preference("Likes 1990s comedies.") is None
    True
    """
    text = without_reasoning(reply)
    match = _STRUCTURE.match(text)
    if match is None or "\n" in match.group("factors"):
        return None
    factors = tuple(f.strip() for f in match.group("factors").split(",") if f.strip())
    return ParsedPreference(factors, match.group("preference")) if factors else None
