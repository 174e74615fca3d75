"""Turn an LLM's numbered top-10 reply into positions in the candidate set.

:func:`parse_ranking` reads a reply such as ``"1. Toy Story (1995)\\n2. **Heat (1995)** - because
you liked Ronin"`` and returns the 0-based indices into ``candidates`` (the candidate titles) in
the order the reply names them. :func:`normalise_title` is the canonical form it compares titles in.

Which lines count
-----------------
* A *numbered item* starts with ``1.``, ``1)``, ``1:``, ``1]``, ``(1)``, ``[1]``, ``#1`` or
  ``1 -`` (numbers 1 to 99), possibly after a bullet, a Markdown header (``### 1. ...``) or
  emphasis (``**1.** ...``). A number alone on its line takes the next line as its text.
* A *bullet item* starts with ``-``, ``*``, ``+``, ``•`` (and similar) and a space. Bullet items
  count only when the reply has no numbered item, so the ``- because ...`` sub-bullets under a
  numbered list never add titles.
* A list on one line (``1. A 2. B 3. C``, possibly after a preamble on that line) is split at its
  numbers, which must run consecutively in the same style, not ``1 -`` (at least three of them, so
  that ``1. Toy Story 2. A fun sequel`` stays one item).
* Any other line (a preamble such as ``Here are my recommendations:``) counts only when the whole
  line, Markdown removed, names a candidate with its year (or a candidate that has none).

Which part of an item is the title
----------------------------------
The first of these spans that names a candidate wins, and nothing else is tried for that item:
the text up to and including the first ``(1995)``-style year; the leading ``**bold**``,
``_italic_``, ```code``` or quoted span (plus a year right after it); the whole item; the item cut
before a separator (``" - "``, ``" – "``, ``": "``, ``", "``, ``". "``, ``" ("``, ``" | "``) that
is followed by commentary, longest first. Commentary starts with a lower-case word or a word such
as ``Because``, ``Similar``, ``This``; after a dash, period or parenthesis also ``A``, ``An``,
``As``, ``For``, but never after a colon or comma, where a subtitle starts. ``Alien: Resurrection``
and ``Die Hard: With a Vengeance`` are therefore never cut to ``Alien`` and ``Die Hard``;
``Alien: a classic`` and ``Heat - A crime epic`` are.

When a title names a candidate
------------------------------
:func:`normalise_title` folds away what an LLM varies without meaning another film: HTML entities,
accents, curly quotes and dashes, case, Markdown characters, punctuation and the spaces between
words (``L.A.`` = ``LA``, ``Spider-Man`` = ``Spider Man`` = ``Spiderman``), ``&`` = ``and``, and
MovieLens's trailing articles: ``Matrix, The (1999)`` and ``The Matrix (1999)`` are both
``thematrix 1999``, for English, French, Italian, Spanish, German, Portuguese, Dutch and
Scandinavian articles (``Misérables, Les``, ``Appartement, L'``). A year is a trailing ``(1995)``,
``[1995]`` or ``(1998 remake)``; trailing parentheses before it are alternative titles
(``Seven (Se7en) (1995)``, ``M*A*S*H (a.k.a. MASH) (1970)``).

A reply title is looked up in tiers, and the first tier with a match decides:

1. *exact*: the normalised reply equals a candidate's normalised title;
2. *alias*: it equals, with the same year, one of a candidate's alternative titles (``Se7en
   (1995)``) or its title without a leading ``The``, ``A`` or ``An`` (``Matrix (1999)``); the
   reply's own trailing parentheses are also dropped here (``Toy Story (Pixar) (1995)``);
3. *year-less*: the reply has no year, and its normalised text equals the year-less exact or alias
   title of exactly one candidate (``Heat`` names ``Heat (1995)`` unless ``Heat (1972)`` is also a
   candidate); a reply with a year matches a candidate with no year in the same way.

An alias or year-less title shared by several different candidates names none of them. Two years
that differ never match, and there is no substring or fuzzy matching: ``Toy Story (1995)`` never
names ``Toy Story 2 (1999)``, ``Aliens (1986)`` never names ``Alien (1979)``, ``Heat Wave`` never
names ``Heat``. The article is only ever dropped from the candidate's side, so ``The Heat``
never names ``Heat``.

A candidate named twice keeps its first place; a later mention is dropped (when the candidate set
holds the same title twice, the second mention names the second copy). The result therefore holds
distinct indices, at most ``len(candidates)`` of them.

Reasoning, JSON and comma lists
-------------------------------
* Reasoning blocks are not part of the answer: ``<think>...</think>``, ``<thinking>...</thinking>``
  and ``<reasoning>...</reasoning>`` are removed; an opening tag that is never closed makes the rest
  of the reply reasoning, and a closing tag with no opening tag makes everything before it
  reasoning. A reply that is only reasoning ranks nothing.
* A JSON array (the reply itself, a line of it, or a ```` ```json ```` fence) is read as the
  ranking: ``["Heat (1995)", "Casino (1995)"]``, or objects with a ``title``, ``name``, ``item``,
  ``movie`` or ``game`` field.
* A line with no list marker such as ``Heat (1995), Casino, Good, the Bad and the Ugly, The (1966)``
  is read as a comma-separated list when at least two of its pieces name candidates. Pieces are
  joined back where that names a candidate, the longest join first, so titles with commas in them
  stay whole.

Size and speed
--------------
Once its reasoning is removed, a reply is cut to its first :data:`MAX_REPLY_CHARS` characters
(32 KiB) before it is read: a top-10 list is a few hundred characters, and the rest of a longer
reply is rambling. A title span longer
than three times the longest candidate title plus 60 characters names no candidate and is not
looked up, so every item costs at most a bounded amount of work and parsing is linear in the
reply's length. A plain ASCII span gets its key without the full normalisation, and a span whose
first letters open no candidate's key is not normalised at all (neither changes what a span
names). ``benchmarks/parse_speed.py`` measures it: a 100 kB reply of the worst shapes takes tens of
milliseconds. The normal form of each title and the lookup tables of each candidate set are
cached, so a 10-line reply against 50 candidates parses in well under a millisecond.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from functools import lru_cache
from itertools import islice
from typing import Iterator, NamedTuple, Sequence

__all__ = ["MAX_REPLY_CHARS", "normalise_title", "parse_ranking"]

MAX_REPLY_CHARS = 32 * 1024
"""Characters of a reply that are read; the rest is dropped before parsing."""

# Articles that MovieLens moves to the end of a title ("Misérables, Les"), in the languages its
# titles use. Elided ones end with an apostrophe and join the next word without a space.
TRAILING_ARTICLES = (
    "the", "a", "an",                                   # English
    "le", "la", "les", "l'", "un", "une",               # French
    "il", "lo", "i", "gli", "uno", "una",               # Italian
    "el", "los", "las",                                 # Spanish
    "der", "die", "das", "ein", "eine",                 # German
    "o", "os", "as",                                    # Portuguese
    "de", "het", "een",                                 # Dutch
    "den", "det", "en", "ett",                          # Scandinavian
)  # fmt: skip
# An LLM drops an English article ("Matrix (1999)" for "The Matrix"), seldom a foreign one, and
# "Die Hard" must not also answer to "Hard".
DROPPABLE_ARTICLES = frozenset(("the", "a", "an"))

_QUOTES_AND_DASHES = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u00a0": " ",
})  # fmt: skip
_MARKDOWN_CHARS = str.maketrans("", "", "*_`~")

# "(1995)", "[1995]", "(1995-1997)", "(1995 film)", "(1998 remake)": a paren that opens with a year.
_YEAR = r"[(\[]\s*(\d{4})(?:\s*-\s*(?:\d{4})?)?(?:[\s,;:][^()\[\]]{0,80})?[)\]]"
_TRAILING_YEAR = re.compile(r"\s*" + _YEAR + r"$", re.IGNORECASE)
_ANY_YEAR = re.compile(_YEAR, re.IGNORECASE)
_LEADING_YEAR = re.compile(r"\s*" + _YEAR, re.IGNORECASE)
_TRAILING_PAREN = re.compile(r"\s*[(\[]([^()\[\]]*)[)\]]\s*$")
_AKA = re.compile(r"^\s*(?:a\.?\s?k\.?\s?a\.?|also known as)\s*:?\s*", re.IGNORECASE)
_TRAILING_ARTICLE = re.compile(
    r"^(.+?),\s*(" + "|".join(re.escape(a) for a in TRAILING_ARTICLES) + r")$", re.IGNORECASE
)
_ELISION = re.compile(r"\b([ld])'\s+(?=\w)", re.IGNORECASE)  # "L' Appartement" -> "L'Appartement"
_DELETED = re.compile(r"['*_.\-`]")  # joined, not split: "A.I." is the word "ai", not the article "a"
_NON_WORD = re.compile(r"\W+")
_TRIM = " \t.,;:!?-"


def _fold(text: str) -> str:
    """HTML entities, curly quotes, dashes and accents folded to plain ASCII-like text."""
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text.translate(_QUOTES_AND_DASHES))
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text


def _normalise_part(text: str) -> str:
    text = _ELISION.sub(r"\1'", text.strip())
    moved = _TRAILING_ARTICLE.match(text)
    if moved:
        body, article = moved.groups()
        text = article + body if article.endswith("'") else f"{article} {body}"
    text = _DELETED.sub("", text.casefold().replace("&", " and "))
    return " ".join(_NON_WORD.sub(" ", text).split())


@lru_cache(maxsize=1 << 16)
def _title_parts(title: str) -> tuple[tuple[str, ...], str | None]:
    """``(normalised title, normalised alternative titles...)`` and the year (or ``None``)."""
    text = _fold(title).strip().rstrip(_TRIM)
    year = None
    dated = _TRAILING_YEAR.search(text)
    if dated and dated.start() > 0:
        year = dated.group(1)
        text = text[: dated.start()].rstrip(_TRIM)
    alternatives: list[str] = []
    while len(alternatives) < 4:
        paren = _TRAILING_PAREN.search(text)
        if not paren or paren.start() == 0:
            break
        alternatives.insert(0, _AKA.sub("", paren.group(1)))
        text = text[: paren.start()].rstrip(_TRIM)
    parts = tuple(p for p in map(_normalise_part, [text, *alternatives]) if p)
    return parts, year


def _key(parts: Sequence[str], year: str | None) -> str:
    # Spaces inside a title are dropped so that "Half-Life", "Half Life" and "HalfLife" agree.
    words = [part.replace(" ", "") for part in parts]
    return " ".join([*words, year] if year else words)


def normalise_title(title: str) -> str:
    """The form titles are compared in; two titles are the same exactly when their forms are equal.

    Lower-case, accents and HTML entities folded, MovieLens's trailing article moved to the front,
    punctuation and spaces removed; then each alternative title in parentheses and the year, each
    after one space. ``"Matrix, The (1999)"`` -> ``"thematrix 1999"``, ``"Seven (Se7en) (1995)"``
    -> ``"seven se7en 1995"``, ``"Portal 2"`` -> ``"portal2"``.
    """
    return _key(*_title_parts(title))


class _CandidateIndex(NamedTuple):
    """Lookup tables of one candidate set. A key maps to the indices of the candidates it names:
    several only when they are copies of one title, an empty tuple when it is ambiguous."""

    exact: dict[str, tuple[int, ...]]
    alias: dict[str, tuple[int, ...]]
    yearless: dict[str, tuple[int, ...]]  # for a reply without a year
    undated: dict[str, tuple[int, ...]]  # candidates without a year, for a reply with one
    longest_span: int  # characters; a longer span names no candidate
    most_commas: int  # the most commas in one candidate title
    openings: frozenset[str]  # the first 1..PREFIX letters and digits of every key above


def _finish(table: dict[str, list[int]], full_keys: list[str]) -> dict[str, tuple[int, ...]]:
    return {
        key: tuple(dict.fromkeys(idx)) if len({full_keys[i] for i in idx}) == 1 else ()
        for key, idx in table.items()
    }


@lru_cache(maxsize=512)
def _candidate_index(candidates: tuple[str, ...]) -> _CandidateIndex:
    exact: dict[str, list[int]] = {}
    alias: dict[str, list[int]] = {}
    yearless: dict[str, list[int]] = {}
    undated: dict[str, list[int]] = {}
    full_keys = []
    for i, title in enumerate(candidates):
        if not isinstance(title, str):
            raise TypeError(f"candidates[{i}] is {title!r}; parse_ranking needs the candidate titles as str")
        parts, year = _title_parts(title)
        full = _key(parts, year)
        full_keys.append(full)
        exact.setdefault(full, []).append(i)
        names = set(parts)
        for part in parts:
            first, _, rest = part.partition(" ")
            if rest and first in DROPPABLE_ARTICLES:
                names.add(rest)
        for name in names:
            if _key([name], year) != full:
                alias.setdefault(_key([name], year), []).append(i)
        for key in {_key([name], None) for name in names} | {_key(parts, None)}:
            yearless.setdefault(key, []).append(i)
            if year is None:
                undated.setdefault(key, []).append(i)
    return _CandidateIndex(
        {key: tuple(idx) for key, idx in exact.items()},
        _finish(alias, full_keys),
        _finish(yearless, full_keys),
        _finish(undated, full_keys),
        3 * max(map(len, candidates)) + 60,
        max(title.count(",") for title in candidates),
        frozenset(
            key.replace(" ", "")[:n] for table in (exact, alias, yearless, undated) for key in table
            for n in range(1, _PREFIX + 1)
        ),
    )


# A key starts with the letters and digits of the span's first title, in order (ASCII, lower case),
# unless the span moves a trailing article to the front, spells "and" as "&" or folds non-ASCII
# letters: so, for the other spans, the first few of them must open some candidate's key. Most spans of a long
# reply fail this check, and it costs far less than normalising them.
_PREFIX = 6
_OPENING = re.compile(r"[^a-z0-9]*" + r"(?:([a-z0-9])[^a-z0-9]*)?" * _PREFIX, re.IGNORECASE)
_COMMA_ARTICLE = re.compile(r",\s*(?:" + "|".join(re.escape(a) for a in TRAILING_ARTICLES) + r")(?![a-z])", re.IGNORECASE)


def _reorders(span: str) -> bool:
    """Whether normalising ``span`` may move or add letters: a non-ASCII letter, ``&``, ``, The``."""
    return not span.isascii() or "&" in span or ("," in span and _COMMA_ARTICLE.search(span) is not None)


def _may_name(index: _CandidateIndex, span: str) -> bool:
    """False when ``span`` cannot name a candidate of ``index`` (a cheap check before normalising it)."""
    if _reorders(span):
        return True
    # Only the first title counts: a span is also looked up without its bracketed alternative titles.
    first_title = min((i for i in (span.find("("), span.find("[")) if i >= 0), default=len(span))
    opening = "".join(filter(None, _OPENING.match(span, 0, first_title).groups())).lower()
    return not opening or opening in index.openings


def _pick(indices: tuple[int, ...], used: set[int]) -> int:
    for i in indices:
        if i not in used:
            return i
    return indices[0]  # all taken: a repeat, which the caller drops


# A plain ASCII span: its key is its letters and digits (and the year of a "(1995)" at its end), the
# same as _title_parts gives, without the regular expressions that handle alternative titles and
# articles. Only a bracket at the end of a span makes a year or an alternative title.
_PLAIN_YEAR = re.compile(r"([^()\[\]]*)\((\d{4})\)")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def _span_keys(index: _CandidateIndex, span: str) -> tuple[list[str], list[str], bool] | None:
    """``(keys for tiers 1-2, keys for tier 3, has a year)`` of ``span``, or ``None`` when it names nothing."""
    key, year = "", None
    if not _reorders(span) and "\n" not in span:
        text = span.strip().rstrip(_TRIM)
        dated = _PLAIN_YEAR.fullmatch(text) if text.endswith((")", "]")) else None
        if dated:
            key, year = _NOT_ALNUM.sub("", dated.group(1).lower()), dated.group(2)
        elif not text.endswith((")", "]")):
            key = _NOT_ALNUM.sub("", text.lower())
    if key:
        return [f"{key} {year}" if year else key], [key], year is not None
    if not _may_name(index, span):
        return None
    parts, year = _title_parts(span)
    if not parts:
        return None
    dated_keys = [_key(parts, year)] + ([_key(parts[:1], year)] if len(parts) > 1 else [])
    return dated_keys, list(dict.fromkeys([_key(parts, None), _key(parts[:1], None)])), year is not None


def _lookup(index: _CandidateIndex, span: str, used: set[int], loose: bool) -> int | None:
    """The candidate ``span`` names, by the tiers in the module docstring; ``loose`` allows tier 3."""
    if len(span) > index.longest_span:
        return None
    keys = _span_keys(index, span)
    if keys is None:
        return None
    dated, undated, has_year = keys
    for key in dated:
        for table in (index.exact, index.alias):
            hit = table.get(key)
            if hit:
                return _pick(hit, used)
    if loose:
        table = index.undated if has_year else index.yearless
        for key in undated:
            hit = table.get(key)
            if hit:
                return _pick(hit, used)
    return None


# ---------------------------------------------------------------- reading the reply's lines

_BULLETS = "-*+\u2022\u25aa\u25ba\u2023\u25e6\u00b7"
# "(1)" or "[1]"; "#1"; "1." "1)" "1:" "1]" or "1 -". At most two digits, so "2001: A Space Odyssey" is a title.
_NUMBER = (
    r"(?:[(\[](?P<wrapped>\d{1,2})[)\]]|\#(?P<hash>\d{1,2})[.:)]?(?=\s)"
    r"|(?P<plain>\d{1,2})(?P<punct>[.):\]](?!\d)|\s*-(?=\s)))"
)
_NUMBERED = re.compile(rf"^(?:[{_BULLETS}]\s+)?[*_]{{0,3}}" + _NUMBER + r"[*_]{0,3}\s*")
_BULLET = re.compile(rf"^[{_BULLETS}]\s+")
_HEADER = re.compile(r"^(?:#{1,6}\s+|>\s*)+")
_INLINE_FIRST = re.compile(
    r"(?:^|(?<=[\s:]))[*_]{0,3}"
    r"(?:[(\[](?P<wrapped>1)[)\]]|\#(?P<hash>1)[.:)]?(?=\s)|(?P<plain>1)(?P<punct>[.):\]](?!\d)))[*_]{0,3}\s*"
)
_TAG = re.compile(r"<[^<>\n]{1,200}>")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(
    r'^\s*(?:\*\*(.+?)\*\*|__(.+?)__|\*(.+?)\*|_(.+?)_|`(.+?)`|"(.+?)"|\'(.+?)\')'
)
_SEPARATOR = re.compile(r"\s+-{1,2}\s+|(?P<subtitle>[:,])\s+|\.\s+|\s+\(|\s+\|\s+")
_COMMENTARY_STARTS = frozenset(
    """because since given if this these it its it's they their like similar another you your
    recommended based fans perfect great same also matches fits which that why reason note
    featuring starring directed released combines offers follows shares continues features""".split()
)
# Words that start commentary after a dash ("Heat - A crime epic") but a subtitle after a colon
# ("Wallace & Gromit: A Close Shave", "Die Hard: With a Vengeance").
_SUBTITLE_STARTS = frozenset("a an as for".split())


class _Item(NamedTuple):
    kind: str  # "numbered", "bullet" or "plain"
    text: str


def _style(match: re.Match[str]) -> str | None:
    """How a numbered marker is written, for finding the next one on the same line (None: don't)."""
    if match.group("wrapped"):
        return "wrapped"
    if match.group("hash"):
        return "hash"
    punct = match.group("punct").strip()
    return None if punct == "-" else punct  # "1 - A 2 - B" is too easily a title with a number


@lru_cache(maxsize=256)
def _next_marker(number: int, style: str) -> re.Pattern[str]:
    body = {
        "wrapped": rf"[(\[]{number}[)\]]",
        "hash": rf"\#{number}\b[.:)]?",
    }.get(style, rf"{number}{re.escape(style)}(?!\d)")
    return re.compile(r"(?:(?<=\s)|(?<=[,;]))[*_]{0,3}" + body + r"[*_]{0,3}\s*")


def _split_inline(text: str, number: int, style: str | None) -> list[str]:
    """Split ``"A 2. B 3. C"`` (the text after marker ``number``) at consecutive numbers, if 3 items or more."""
    if style is None:
        return [text]
    pieces, start, position = [], 0, 0
    open_parens = 0  # of the piece so far, counted once per character
    number += 1
    while found := _next_marker(number, style).search(text, position):
        open_parens += text.count("(", position, found.start()) - text.count(")", position, found.start())
        if open_parens > 0:  # "Alien³ (a.k.a. Alien 3)": the 3) is in the title
            open_parens += text.count("(", found.start(), found.end()) - text.count(")", found.start(), found.end())
            position = found.end()
            continue
        pieces.append(text[start : found.start()].rstrip(" ,;"))
        start = position = found.end()
        open_parens = 0
        number += 1
    pieces.append(text[start:])
    return pieces if len(pieces) >= 3 else [text]


def _items(reply: str) -> list[_Item]:
    if "<" in reply:
        reply = _TAG.sub(" ", reply)
    if "&" in reply:
        reply = html.unescape(reply)
    if not reply.isascii():
        reply = reply.translate(_QUOTES_AND_DASHES)
    items: list[_Item] = []
    awaiting_text = False
    for line in reply.splitlines():
        line = _HEADER.sub("", line.strip())
        if not line:
            continue
        numbered = _NUMBERED.match(line)
        if numbered:
            rest = line[numbered.end() :]
            number = int(numbered.group("wrapped") or numbered.group("hash") or numbered.group("plain"))
            pieces = _split_inline(rest, number, _style(numbered)) if rest else []
            items.extend(_Item("numbered", piece) for piece in pieces)
            awaiting_text = not rest.strip(" *_")
            continue
        if awaiting_text:
            items.append(_Item("numbered", line))
            awaiting_text = False
            continue
        bullet = _BULLET.match(line)
        if bullet:
            items.append(_Item("bullet", line[bullet.end() :]))
            continue
        first = _INLINE_FIRST.search(line)
        if first:
            pieces = _split_inline(line[first.end() :], 1, _style(first))
            if len(pieces) > 1:
                items.extend(_Item("numbered", piece.strip()) for piece in pieces)
                continue
        items.append(_Item("plain", line))
    if any(item.kind == "numbered" for item in items):
        return [item for item in items if item.kind != "bullet"]
    return items


def _clean(text: str) -> str:
    if "](" in text:
        text = _LINK.sub(r"\1", text)
    return text.translate(_MARKDOWN_CHARS).strip()


def _commentary_follows(text: str, after_subtitle_separator: bool) -> bool:
    text = text.lstrip("(\"'")
    if not text:
        return False
    if text[0].islower():
        return True
    word = _NON_WORD.split(text, maxsplit=1)[0].casefold()
    return word in _COMMENTARY_STARTS or (not after_subtitle_separator and word in _SUBTITLE_STARTS)


def _title_spans(raw: str, longest_span: int) -> Iterator[str]:
    """Where the title of a list item may end, most likely first (see the module docstring).

    Only the first ``longest_span`` characters of the item can hold a title that names a candidate,
    so a long item is read no further than a few times that (Markdown and links come out first).
    """
    raw = raw[: 4 * longest_span + 400]
    text = _clean(raw)
    dated = _ANY_YEAR.search(text, 0, longest_span + 1)
    if dated:
        yield text[: dated.end()]
    emphasised = _EMPHASIS.match(raw)
    if emphasised:
        span = _clean(next(g for g in emphasised.groups() if g is not None))
        year = _LEADING_YEAR.match(raw, emphasised.end())
        yield f"{span} {year.group(0).strip()}" if year else span
    yield text
    cuts = _SEPARATOR.finditer(text, 0, longest_span + 1)
    for cut in reversed(list(cuts)):
        if _commentary_follows(text[cut.end() : cut.end() + 40], cut.group("subtitle") is not None):
            yield text[: cut.start()]


# ---------------------------------------------------------------- reasoning, JSON, comma lists

_REASONING_TAG = re.compile(r"<\s*(/?)\s*(?:think|thinking|reasoning)\s*>", re.IGNORECASE)
_JSON_START = re.compile(r"```(?:json)?[ \t]*\r?\n?\s*(?=\[)|^\s*(?=\[)", re.IGNORECASE | re.MULTILINE)
_JSON_TITLE_FIELDS = ("title", "name", "item", "movie", "game")
_LIST_PREAMBLE = re.compile(r"^.*:\s+")  # "My picks: Heat, Casino" -> "Heat"


def _answer(reply: str) -> str:
    """``reply`` without its reasoning blocks (see the module docstring)."""
    tags = list(_REASONING_TAG.finditer(reply))
    if not tags:
        return reply
    first_close = next((tag for tag in tags if tag.group(1)), None)
    first_open = next((tag for tag in tags if not tag.group(1)), None)
    position = 0
    if first_close is not None and (first_open is None or first_close.start() < first_open.start()):
        position = first_close.end()  # the opening tag was in the prompt template
    kept, inside = [], False
    for tag in tags:
        if tag.start() < position:
            continue
        if not inside and not tag.group(1):
            kept.append(reply[position : tag.start()])
            inside = True
        elif inside and tag.group(1):
            position, inside = tag.end(), False
    if not inside:
        kept.append(reply[position:])
    return "".join(kept)


def _json_titles(reply: str) -> list[str] | None:
    """The titles of the first JSON array of titles (or of objects with a title field) in ``reply``."""
    decoder = json.JSONDecoder()
    for start in islice(_JSON_START.finditer(reply), 3):  # a few tries keep a long reply linear
        try:
            value, _ = decoder.raw_decode(reply, start.end())
        except (ValueError, RecursionError):
            continue
        if not isinstance(value, list):
            continue
        titles = []
        for element in value:
            if isinstance(element, dict):
                element = next((element[f] for f in _JSON_TITLE_FIELDS if isinstance(element.get(f), str)), None)
            if isinstance(element, str):
                titles.append(element)
        if titles:
            return titles
    return None


def _comma_list(index: _CandidateIndex, line: str, used: set[int]) -> list[int]:
    """The candidates a ``Title, Title, Title`` line names, when it names at least two of them.

    At each piece the longest run of pieces (joined back with commas) that names a candidate wins;
    a piece that starts no such run is skipped.
    """
    pieces = line.split(",")
    if len(pieces) < 2:
        return []
    found: list[int] = []
    taken = set(used)
    start = 0
    while start < len(pieces):
        for stop in range(min(len(pieces), start + index.most_commas + 1), start, -1):
            hit = _lookup(index, ",".join(pieces[start:stop]), taken, loose=True)
            if hit is not None:
                if hit not in taken:
                    taken.add(hit)
                    found.append(hit)
                start = stop
                break
        else:
            preamble = _LIST_PREAMBLE.match(pieces[0]) if start == 0 else None
            if preamble:  # "My picks: Heat" when "Star Wars: Episode IV" was not a title
                pieces[0] = pieces[0][preamble.end() :]
                continue
            start += 1
    return found if len(found) >= 2 else []


def parse_ranking(text: str, candidates: Sequence[str]) -> list[int]:
    """Indices into ``candidates`` (titles) in the order the reply ``text`` lists them.

    Titles the reply names that are not candidates are skipped, a candidate named twice keeps its
    first place, and lines that are not list items are ignored unless the whole line names a
    candidate or is a comma-separated list of them; reasoning blocks are ignored and a JSON array
    of titles is read as the list. The module docstring gives the rules. The result holds distinct
    indices, at most ``len(candidates)`` of them, and is empty for a reply that names no candidate.

    >>> parse_ranking("Sure!\\n1. **The Matrix** (1999)\\n2. Heat - a crime epic\\n3. Aliens (1986)",
    ...               ["Heat (1995)", "Alien (1979)", "Matrix, The (1999)"])
    [2, 0]
    >>> parse_ranking('<think>Heat? No.</think>["Alien (1979)", "Heat (1995)"]', ["Heat (1995)", "Alien (1979)"])
    [1, 0]
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_ranking needs the reply as str, got {type(text).__name__}: {text!r:.80}")
    if not text or not candidates:
        return []
    index = _candidate_index(tuple(candidates))
    text = _answer(text)[:MAX_REPLY_CHARS]
    titles = _json_titles(text) if "[" in text else None
    items = [_Item("numbered", title) for title in titles] if titles is not None else _items(text)
    ranking: list[int] = []
    used: set[int] = set()
    for item in items:
        if item.kind == "plain":
            line = _clean(item.text)
            found = _lookup(index, line, used, loose=False)
            if found is None and "," in line:
                named = [i for i in _comma_list(index, line, used) if i not in used]
                used.update(named)
                ranking.extend(named)
                continue
        else:
            spans = _title_spans(item.text, index.longest_span)
            found = next((hit for span in spans if (hit := _lookup(index, span, used, loose=True)) is not None), None)
        if found is not None and found not in used:
            used.add(found)
            ranking.append(found)
    return ranking
