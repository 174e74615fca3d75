"""A hint knowledge base (KB): an ordered list of short hints with a content hash.

Action ``k`` (``1 <= k <= K``) of an environment appends ``kb[k - 1]`` to the prompt; action 0
adds no hint. The KB's ``hash`` goes into every feedback table's provenance, so editing a hint
never silently reuses rankings computed with the old text.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from rec_gym.storage import stable_hash

DEFAULT_KB_FILES = {"movie": "movies.txt", "game": "games.txt"}
MAX_HINT_CHARS = 500


def _normalised(hint: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", hint.lower()).strip()


class KnowledgeBase:
    """An ordered, de-duplicated sequence of hints.

    Args:
        hints: the hint texts, in action order (action ``k`` uses ``hints[k - 1]``).
        name: a label shown in reports; not part of the hash.
        source: where the hints came from (a file path or ``"default:movie"``), for error messages.
    """

    def __init__(self, hints: Iterable[str], name: str = "custom", source: str = "<list>") -> None:
        cleaned: list[str] = []
        seen: dict[str, int] = {}
        for k, hint in enumerate(hints, start=1):
            if not isinstance(hint, str):
                raise TypeError(f"{source} hint {k}: expected a string, got {type(hint).__name__}")
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

    def save(self, path: str | os.PathLike) -> None:
        """Write one hint per line (the format :func:`load_knowledge_base` reads)."""
        from rec_gym.storage import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(self.hints) + "\n", encoding="utf-8")


def _read_file(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"knowledge base file {path} does not exist; pass kb='default', a list of hints, "
                                "or the path of a .txt (one hint per line) or .jsonl ({\"hint\": ...} per line) file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        hints = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                hints.append(record["hint"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path} line {line_no}: expected a JSON object with a \"hint\" field, "
                                 f"got {line[:80]!r}") from None
        return hints
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_knowledge_base(kb: "str | os.PathLike | Sequence[str] | KnowledgeBase" = "default",
                        domain: str = "movie") -> KnowledgeBase:
    """Resolve a ``kb=`` value: ``"default"`` (the domain's shipped KB of 20 hints), a file path, a list of hints,
    or a :class:`KnowledgeBase`."""
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
        return KnowledgeBase(_read_file(path), name=path.stem, source=str(path))
    if isinstance(kb, Sequence):
        return KnowledgeBase(list(kb))
    raise TypeError(f"kb={kb!r}: expected 'default', a file path, a list of hint strings or a KnowledgeBase")
