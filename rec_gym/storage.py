"""Where rec_gym keeps its caches, and how it writes files without leaving half of one behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

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


def is_lock_error(exc: BaseException) -> bool:
    """Whether an SQLite error says another connection holds the file (busy or locked), not that it is damaged."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def connect_wal(path: str | os.PathLike, timeout: float) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode that waits up to ``timeout`` seconds for other writers.

    SQLite answers ``PRAGMA journal_mode=WAL`` with "database is locked" at once, without its busy
    timeout, while another process is creating or converting the same file; that one statement is
    retried here until ``timeout``. Any other error is raised (the connection closed) for the caller.
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except sqlite3.DatabaseError as exc:
            if not is_lock_error(exc) or time.monotonic() > deadline:
                conn.close()
                raise
        time.sleep(random.uniform(0.005, 0.05))


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


def write_bytes_durably(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: the bytes are fsynced before the rename and the
    rename is fsynced after it, so neither a killed process nor a power cut leaves a half-written file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    fsync_folder(path.parent)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames inside ``folder`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """An advisory lock on ``folder`` itself, across processes: exclusive for a writer, ``shared=True`` for readers.

    It is ``flock`` on the folder, so it adds no file to the folder, needs no write permission to read
    under it, and the kernel releases it when its holder dies (a SIGKILL leaves no stale lock).
    """
    import fcntl

    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _read_at_most(fh: BinaryIO, max_bytes: int, what: str, fix: str) -> bytes:
    data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what} is larger than its limit of {max_bytes:,} bytes; {fix}")
    return data


def read_limited(path: str | os.PathLike, max_bytes: int, fix: str) -> bytes:
    """The bytes of ``path``, refused with a ``ValueError`` naming the file and ``fix`` beyond ``max_bytes``.

    The size is checked before anything is read, and reading stops at the limit, so a file that grows
    meanwhile costs no more memory than the limit.
    """
    size = os.stat(path).st_size
    if size > max_bytes:
        raise ValueError(f"{path} is {size:,} bytes, more than its limit of {max_bytes:,}; {fix}")
    with open(path, "rb") as fh:
        return _read_at_most(fh, max_bytes, str(path), fix)


_ZIP_FIX = "it is not an archive this package wrote; ask its sender for the original or make it again"


def check_zip_sizes(path: str | os.PathLike, max_member_bytes: int, max_total_bytes: int, max_members: int = 64) -> None:
    """Refuse (``ValueError``, one line) a zip archive whose members' declared uncompressed sizes exceed the limits.

    Python's ``zipfile`` never returns more than a member's declared size (a member whose data would
    inflate further fails its CRC check instead), so once this passes, any reader of the archive, such
    as a library's own ``load``, decompresses at most ``max_total_bytes``.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise ValueError(f"{path}: not a readable zip archive ({type(exc).__name__}: {exc}); {_ZIP_FIX}") from None
    if len(members) > max_members:
        raise ValueError(f"{path} holds {len(members):,} members, more than its limit of {max_members:,}; {_ZIP_FIX}")
    for info in members:
        if info.file_size > max_member_bytes:
            raise ValueError(f"{path} member {info.filename[:80]!r} declares {info.file_size:,} bytes, more than its "
                             f"limit of {max_member_bytes:,}; {_ZIP_FIX}")
    total = sum(info.file_size for info in members)
    if total > max_total_bytes:
        raise ValueError(f"{path}: its members declare {total:,} bytes in all, more than its limit of "
                         f"{max_total_bytes:,}; {_ZIP_FIX}")


def read_zip_member(path: str | os.PathLike, name: str, max_bytes: int) -> bytes:
    """The uncompressed bytes of member ``name`` of the zip archive ``path``, at most ``max_bytes`` of them.

    For archives received from others (a zip bomb expands a few kB into gigabytes): the member's
    declared size is checked before decompressing, and decompression stops one byte past the limit in
    case the declaration lies. Raises ``ValueError`` (one line naming the archive, the member and the
    limit) for a missing member, a member over the limit, or an archive that is not a readable zip.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise ValueError(f"{path}: no member {name!r}; {_ZIP_FIX}") from None
            if info.file_size > max_bytes:
                raise ValueError(f"{path} member {name!r} declares {info.file_size:,} bytes, more than its limit of "
                                 f"{max_bytes:,}; {_ZIP_FIX}")
            with archive.open(info) as member:
                return _read_at_most(member, max_bytes, f"{path} member {name!r}", _ZIP_FIX)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as exc:
        # zipfile raises BadZipFile for a bad CRC, OSError/EOFError for truncated data, NotImplementedError
        # for an unknown compression method.
        raise ValueError(f"{path}: not a readable zip archive ({type(exc).__name__}: {exc}); {_ZIP_FIX}") from None


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")


def stable_hash(*parts: Any, length: int = 16) -> str:
    """A hex digest of JSON-serialisable parts that is the same in every process and on every machine."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]
