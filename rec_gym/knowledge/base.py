"""A hint knowledge base (KB): an ordered list of short hints with a content hash.

Action ``k`` (``1 <= k <= K``) of an environment appends ``kb[k - 1]`` to the prompt; action 0
adds no hint. The KB's ``hash`` (of the hint texts alone) goes into every feedback table's provenance,
so editing a hint never silently reuses rankings computed with the old text.

Formats :func:`load_knowledge_base` reads: ``"default"`` (the domain's shipped 20 hints), a list of
strings, a :class:`KnowledgeBase`, or a file: ``.txt`` (one hint per line, ``#`` comments), ``.jsonl``
(``{"hint": ...}`` per line) or ``.json``, the format :meth:`KnowledgeBase.save` writes for a built KB::

    {"format": "rec_gym-kb-v1", "name": "...", "hash": "<hash of the hint texts>",
     "actions": "action 0 = no hint; action k = hints[k - 1]",
     "provenance": {"dataset": ..., "split": "train", "seed": ..., "backend": ..., "template_versions": {...},
                    "options": {...}, "calls": {...}, ...},
     "hints": [{"hint": "...", "provenance": {"session_id": ..., "rank_without": 0, "rank_with": 3,
                                               "validated": true, "order": 5, "transcript_key": "..."}}, ...]}

A KB file may come from someone else, so it is checked before it is used: at most
:data:`MAX_KB_FILE_BYTES` bytes (checked before reading), at most :data:`MAX_HINTS` hints (an env's
action space and feedback table grow with it) of at most :data:`MAX_HINT_CHARS` characters each, the
fields of the types above, and a ``"hash"`` field, when present, equal to the hash of the hints: a
hint edited after the KB was built is refused rather than run under the old hash's name. Every
refusal is one line naming the file, the field and the fix.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from rec_gym.storage import read_limited, stable_hash

DEFAULT_KB_FILES = {"movie": "movies.txt", "game": "games.txt"}
KB_FORMAT = "rec_gym-kb-v1"
MAX_HINT_CHARS = 500
MAX_HINTS = 1_000
MAX_KB_FILE_BYTES = 16 << 20


def _normalised(hint: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", hint.lower()).strip()


class KnowledgeBase:
    """An ordered, de-duplicated sequence of hints.

    Args:
        hints: the hint texts, in action order (action ``k`` uses ``hints[k - 1]``).
        name: a label shown in reports; not part of the hash.
        source: where the hints came from (a file path or ``"default:movie"``), for error messages.
        provenance: how the KB was made (dataset, split, seed, model, template versions, options, LLM
            calls); not part of the hash.
        hint_provenance: one record per hint, in hint order (source session, the error it fixed,
            validation, order of creation, transcript cache key); not part of the hash.
    """

    def __init__(self, hints: Iterable[str], name: str = "custom", source: str = "<list>",
                 provenance: dict[str, Any] | None = None,
                 hint_provenance: Sequence[dict[str, Any]] | None = None) -> None:
        cleaned: list[str] = []
        seen: dict[str, int] = {}
        if isinstance(hints, Sequence) and len(hints) > MAX_HINTS:
            raise ValueError(f"{source}: {len(hints):,} hints, more than rec_gym.knowledge.base.MAX_HINTS = {MAX_HINTS:,}; "
                             "keep the most useful ones")
        for k, hint in enumerate(hints, start=1):
            if k > MAX_HINTS:
                raise ValueError(f"{source}: more than rec_gym.knowledge.base.MAX_HINTS = {MAX_HINTS:,} hints; keep the "
                                 "most useful ones")
            if not isinstance(hint, str):
                raise TypeError(f"{source} hint {k}: expected a string, got {type(hint).__name__}; write the hint as text")
            text = " ".join(hint.split())
            if not text:
                raise ValueError(f"{source} hint {k}: empty hint; remove the entry")
            if len(text) > MAX_HINT_CHARS:
                raise ValueError(f"{source} hint {k}: {len(text)} characters, more than {MAX_HINT_CHARS}; shorten it")
            key = _normalised(text)
            if key in seen:
                raise ValueError(f"{source} hint {k} repeats hint {seen[key]} ({text!r}); remove the duplicate")
            seen[key] = k
            cleaned.append(text)
        if not cleaned:
            raise ValueError(f"{source}: the knowledge base has no hints")
        self.hints: tuple[str, ...] = tuple(cleaned)
        self.name = name
        self.source = source
        self.hash = stable_hash(list(self.hints))
        self.provenance: dict[str, Any] = dict(provenance or {})
        if hint_provenance is not None and len(hint_provenance) != len(self.hints):
            raise ValueError(f"{source}: {len(hint_provenance)} hint provenance records for {len(self.hints)} hints")
        self.hint_provenance: list[dict[str, Any]] = [dict(p) for p in (hint_provenance or [{} for _ in self.hints])]

    def __len__(self) -> int:
        return len(self.hints)

    def __getitem__(self, k: int) -> str:
        return self.hints[k]

    def __iter__(self):
        return iter(self.hints)

    def __repr__(self) -> str:
        return f"KnowledgeBase(name={self.name!r}, hints={len(self)}, hash={self.hash})"

    def hint_for_action(self, action: int) -> str | None:
        """The hint of ``action`` (``None`` for action 0)."""
        return None if action == 0 else self.hints[action - 1]

    def to_json(self) -> dict[str, Any]:
        """The JSON form (:data:`KB_FORMAT`): hints with their provenance, the KB's provenance and hash."""
        return {"format": KB_FORMAT, "name": self.name, "hash": self.hash,
                "actions": "action 0 = no hint; action k = hints[k - 1]", "provenance": self.provenance,
                "hints": [{"hint": h, "provenance": p} for h, p in zip(self.hints, self.hint_provenance)]}

    def save(self, path: str | os.PathLike) -> None:
        """Write the KB atomically: JSON with provenance for a ``.json`` path, else one hint per line."""
        from rec_gym.storage import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            if path.suffix == ".json":
                tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
            else:
                tmp.write_text("\n".join(self.hints) + "\n", encoding="utf-8")


def _read_json(path: Path, text: str) -> KnowledgeBase:
    fix = "write a KB with `rec-gym build-kb --out kb.json` or KnowledgeBase.save"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); {fix}") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply; {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("hints"), list):
        raise ValueError(f"{path}: expected a JSON object with a \"hints\" list (format {KB_FORMAT!r}), "
                         f"got {type(data).__name__}")
    if data.get("format", KB_FORMAT) != KB_FORMAT:
        raise ValueError(f"{path}: format {str(data['format'])[:40]!r}; this rec_gym reads {KB_FORMAT!r}")
    if len(data["hints"]) > MAX_HINTS:
        raise ValueError(f"{path}: field \"hints\" holds {len(data['hints']):,} hints, more than "
                         f"rec_gym.knowledge.base.MAX_HINTS = {MAX_HINTS:,}; keep the most useful ones")
    for field, kind in (("name", str), ("hash", str), ("provenance", dict)):
        if data.get(field) is not None and not isinstance(data[field], kind):
            raise ValueError(f"{path}: field \"{field}\" must be a JSON {'string' if kind is str else 'object'}, got "
                             f"{type(data[field]).__name__}; {fix}")
    hints, records = [], []
    for k, entry in enumerate(data["hints"], start=1):
        if isinstance(entry, str):
            entry = {"hint": entry}
        if not isinstance(entry, dict) or "hint" not in entry:
            raise ValueError(f"{path} hints[{k - 1}]: expected a string or an object with a \"hint\" field, "
                             f"got {str(entry)[:80]!r}")
        if entry.get("provenance") is not None and not isinstance(entry["provenance"], dict):
            raise ValueError(f"{path} hints[{k - 1}]: field \"provenance\" must be a JSON object, got "
                             f"{type(entry['provenance']).__name__}; {fix}")
        hints.append(entry["hint"])
        records.append(dict(entry.get("provenance") or {}))
    kb = KnowledgeBase(hints, name=str(data.get("name") or path.stem), source=str(path),
                       provenance=dict(data.get("provenance") or {}), hint_provenance=records)
    if data.get("hash") is not None and data["hash"] != kb.hash:
        raise ValueError(f"{path}: field \"hash\" is {data['hash'][:40]!r} but the hints hash to {kb.hash!r}, so they "
                         "were edited after the KB was built; rebuild it with `rec-gym build-kb`, or delete the "
                         "\"hash\" field to use the edited hints under their own hash")
    return kb


def _read_file(path: Path) -> "list[str] | KnowledgeBase":
    if not path.is_file():
        raise FileNotFoundError(f"knowledge base file {path} does not exist; pass kb='default', a list of hints, "
                                "or the path of a .json (rec-gym build-kb), .txt (one hint per line) or .jsonl "
                                "({\"hint\": ...} per line) file")
    raw = read_limited(path, MAX_KB_FILE_BYTES, f"a knowledge base holds at most {MAX_HINTS:,} short hints "
                       "(rec_gym.knowledge.base.MAX_KB_FILE_BYTES)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if path.suffix == ".json":
        return _read_json(path, text)
    if path.suffix == ".jsonl":
        hints = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                hints.append(record["hint"])
            except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
                raise ValueError(f"{path} line {line_no}: expected a JSON object with a \"hint\" field, "
                                 f"got {line[:80]!r}") from None
            if len(hints) > MAX_HINTS:
                break  # the KB refuses it with the limit's name
        return hints
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_knowledge_base(kb: "str | os.PathLike | Sequence[str] | KnowledgeBase" = "default",
                        domain: str = "movie") -> KnowledgeBase:
    """Resolve a ``kb=`` value: ``"default"`` (the domain's shipped KB of 20 hints), a file path (``.json``,
    ``.txt``, ``.jsonl``), a list of hints, or a :class:`KnowledgeBase`."""
    if isinstance(kb, KnowledgeBase):
        return kb
    if isinstance(kb, str) and kb == "default":
        if domain not in DEFAULT_KB_FILES:
            raise ValueError(f"no default knowledge base for domain {domain!r}; known: {sorted(DEFAULT_KB_FILES)}")
        resource = resources.files("rec_gym.knowledge") / "hints" / DEFAULT_KB_FILES[domain]
        hints = [line for line in resource.read_text(encoding="utf-8").splitlines() if line.strip()]
        return KnowledgeBase(hints, name=f"default-{domain}", source=f"default:{domain}")
    if isinstance(kb, (str, os.PathLike)):
        path = Path(kb).expanduser()
        read = _read_file(path)
        return read if isinstance(read, KnowledgeBase) else KnowledgeBase(read, name=path.stem, source=str(path))
    if isinstance(kb, Sequence):
        return KnowledgeBase(list(kb), source="the kb= list")
    raise TypeError(f"kb={kb!r}: expected 'default', a file path, a list of hint strings or a KnowledgeBase")
