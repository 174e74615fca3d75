"""Hints out of a model's reply, and the leak check that keeps the true item out of them.

A reply to "write short imperative hints, one per point" arrives in many shapes: a numbered or
bulleted list, points of several sentences or lines, ``Hint:`` or ``Hint 3:`` prefixes, bold labels
(``**Genre:** Recommend ...``), blank lines, Markdown headings and emphasis, a reasoning block
(``<think>...</think>``) before the answer, a preamble and a closing remark. :func:`extract_hints`
returns the points, cleaned, in reply order. :func:`leaks_title` says whether a hint names the true
item: its title or a close variant (normalised, without year or article, an alternative title in
parentheses, the subtitle, the sequel number written another way).
"""

from __future__ import annotations

import re
from typing import Iterable

from rec_gym.knowledge.base import MAX_HINT_CHARS
from rec_gym.llm.parsing import _fold, _title_parts

MIN_HINT_WORDS = 3

_REASONING = re.compile(r"<(think|thinking|reasoning|reflection)>.*?(</\1>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
# A list item: "1." "1)" "(1)" "#1" "Step 1:", bullets "-", "*", "+", "•", or a "Hint 2:" line.
_ITEM = re.compile(r"^\s*(?:#{1,6}\s*)?(?:\(?\d{1,2}[.):]\s*|#\d{1,2}[.):]?\s+|[-*+\u2022\u2013]\s+|"
                   r"(?:\*\*|__)?(?:hint|tip|step|point)\s*#?\d{0,2}\s*(?:\*\*|__)?\s*[:.\-\u2013\u2014]\s*(?:\*\*|__)?)",
                   re.IGNORECASE)
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_BOLD_NUMBER = re.compile(r"^(\s*)(\*\*|__)(\d{1,2}[.)])(\2)?\s*")
# A bold label ends with a separator inside or right after the bold: "**Genre:** ...", "**Genre** - ...".
_LABEL = re.compile(r"^\s*(?:\*\*|__)(?:[^*_\n]{1,60}?[:.\-\u2013\u2014]\s*(?:\*\*|__)|[^*_\n]{1,60}?(?:\*\*|__)\s*"
                    r"[:\-\u2013\u2014])\s*(?=\S)")
_PLAIN_LABEL = re.compile(r"^\s*([A-Z][A-Za-z/&' -]{0,40}):\s+(?=\S)")
_HINT_PREFIX = re.compile(r"^\s*(?:hint|tip)\s*#?\d{0,2}\s*[:.\-\u2013\u2014]\s*", re.IGNORECASE)
_INLINE_HINT = re.compile(r"(?<=[.!?])\s+(?:\*\*|__)?hint\s*#?\d{0,2}\s*(?:\*\*|__)?\s*:\s*", re.IGNORECASE)
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_SPACES = re.compile(r"\s+")


def strip_reasoning(reply: str) -> str:
    """``reply`` without reasoning blocks (``<think>...</think>``, or all before a lone closing tag) and code fences."""
    text = _REASONING.sub("\n", reply)
    # A reply that opens with a closing tag carries the reasoning of a template that opened the tag itself.
    closing = re.search(r"</(think|thinking|reasoning)>", text, re.IGNORECASE)
    if closing:
        text = text[closing.end():]
    return _FENCE.sub("", text)


def _clean(point: str) -> str:
    text = _HINT_PREFIX.sub("", point.strip())
    label = _LABEL.match(text)
    if label:
        text = text[label.end():]
    else:
        plain = _PLAIN_LABEL.match(text)
        # "Genre focus: Recommend ..." loses its label; "Hint: ..." went above; a sentence with a colon stays.
        if plain and len(plain.group(1).split()) <= 4 and text[plain.end():plain.end() + 1].isupper():
            text = text[plain.end():]
    text = _HINT_PREFIX.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _SPACES.sub(" ", text).strip().strip("\"'\u201c\u201d").strip()
    return text


def _is_hint(text: str) -> bool:
    return (len(text.split()) >= MIN_HINT_WORDS and len(text) <= MAX_HINT_CHARS and not text.endswith(":")
            and any(ch.isalpha() for ch in text))


def _unbold_number(line: str) -> str:
    """``"**1.** Text"`` -> ``"1. Text"``; ``"**1. Label:** Text"`` -> ``"1. **Label:** Text"``."""
    match = _BOLD_NUMBER.match(line)
    if match is None:
        return line
    indent, bold, number, closed = match.groups()
    return f"{indent}{number} {'' if closed else bold}{line[match.end():]}"


def _points(text: str) -> list[str]:
    """The reply's points: list items (with their continuation lines), else paragraphs."""
    lines = [_unbold_number(line) for line in text.splitlines()]
    if any(_ITEM.match(line) for line in lines):
        points: list[list[str]] = []
        current: list[str] | None = None
        blank = False
        for line in lines:
            if not line.strip():
                blank = True
                continue
            if _ITEM.match(line):
                current = [_ITEM.sub("", line, count=1)]
                points.append(current)
            elif current is not None and (not blank or line[:1].isspace()) and not _HEADING.match(line):
                current.append(line)  # the same point goes on (several lines or sentences)
            else:
                current = None  # a preamble, a heading or a closing remark
            blank = False
        return [" ".join(p) for p in points]
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip() and not _HEADING.match(p)]


def extract_hints(reply: str) -> list[str]:
    """The hints in ``reply``, in order: one per point, cleaned of markers, labels and Markdown.

    Points shorter than :data:`MIN_HINT_WORDS` words, longer than ``MAX_HINT_CHARS`` characters, or ending
    with a colon (a heading) are left out; a point repeated word for word is kept once.

    >>> extract_hints("Here you go:\\n1. **Genre:** Favour comedies.\\n2. Hint: Prefer older films.\\nGood luck!")
    ['Favour comedies.', 'Prefer older films.']
    """
    text = strip_reasoning(reply)
    # "Hint: A. Hint: B." on one line is two points.
    points = [part for point in _points(text) for part in _INLINE_HINT.split(point) if part.strip()]
    hints: list[str] = []
    for point in points:
        hint = _clean(point)
        if _is_hint(hint) and hint not in hints:
            hints.append(hint)
    return hints


# ------------------------------------------------------------------------------------------------ leaks

_ROMAN = {"2": "ii", "3": "iii", "4": "iv", "5": "v", "6": "vi", "7": "vii", "8": "viii", "9": "ix", "10": "x"}
_WORDS = {"2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
          "10": "ten"}
_FROM_ROMAN = {v: k for k, v in _ROMAN.items()}
_ARTICLES = ("the ", "a ", "an ")
_MIN_VARIANT_CHARS = 4


def _words(text: str) -> str:
    """Lower-case words separated by one space: the form hints and titles are compared in."""
    text = _fold(text).casefold().replace("&", " and ")
    return " ".join(re.findall(r"[a-z0-9]+", text.replace("'", "")))


def title_variants(title: str) -> set[str]:
    """The forms of ``title`` that name its item, in ``_words`` form.

    ``"Toy Story 2 (1999)"`` -> ``{"toy story 2", "toy story ii", "toy story two", "toy story part 2", ...}``;
    ``"Matrix, The (1999)"`` -> ``{"the matrix", "matrix"}``; a subtitle after ``:`` or `` - `` of two
    words or more is a variant too.
    """
    parts, _ = _title_parts(title)
    variants: set[str] = set()
    for part in parts:
        base = _words(part)
        forms = {base}
        for article in _ARTICLES:
            if base.startswith(article):
                forms.add(base[len(article):])
        for form in list(forms):
            words = form.split()
            if not words:
                continue
            last = words[-1]
            number = last if last in _ROMAN else _FROM_ROMAN.get(last)
            if number is not None and len(words) > 1:
                stem = " ".join(words[:-1])
                forms |= {f"{stem} {number}", f"{stem} {_ROMAN[number]}", f"{stem} {_WORDS[number]}",
                          f"{stem} part {number}", f"{stem} part {_ROMAN[number]}", f"{stem} part {_WORDS[number]}"}
        variants |= {f for f in forms if f}
    undated = re.sub(r"\s*\(\d{4}\)\s*$", "", _fold(title))
    for sep in (":", " - ", " \u2013 "):
        tail = undated.partition(sep)[2]
        if len(_words(tail).split()) >= 2:
            variants.add(_words(tail))
    return variants


def leaks_title(hint: str, title: str, allowed: Iterable[str] = ()) -> bool:
    """Whether ``hint`` names the item called ``title`` (any of its :func:`title_variants`).

    ``allowed`` are titles the hint may name (the session's history): a variant that is also one of
    their variants is not a leak. A one-word variant shorter than 5 letters counts only when the hint
    writes it capitalised as a word ("Up", not "pick up").
    """
    permitted = set().union(*(title_variants(t) for t in allowed)) if allowed else set()
    text = f" {_words(hint)} "
    for variant in title_variants(title) - permitted:
        if len(variant.replace(" ", "")) < _MIN_VARIANT_CHARS:
            continue
        if " " not in variant and len(variant) < 5:
            if re.search(rf"\b{re.escape(variant.capitalize())}\b", _fold(hint)):
                return True
            continue
        if f" {variant} " in text:
            return True
    return False
