"""Where rec_gym keeps its caches, and how it writes files without leaving half of one behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

CACHE_ENV_VAR = "REC_GYM_CACHE"


def cache_dir(sub: str = "") -> Path:
    """The cache root (``$REC_GYM_CACHE`` or ``~/.cache/rec_gym``), or a folder inside it, created on demand."""
    root = Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "rec_gym").expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block finishes.

    A crash or an exception inside the block leaves ``path`` as it was and removes the
    temporary file, so no reader ever sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def sqlite_transaction(conn: Any) -> Iterator[None]:
    """One write transaction on an autocommit SQLite connection: committed if the block finishes, else rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")


def stable_hash(*parts: Any, length: int = 16) -> str:
    """A hex digest of JSON-serialisable parts that is the same in every process and on every machine."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]
