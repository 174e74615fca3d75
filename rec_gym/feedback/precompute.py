"""Filling a feedback table ahead of training: what a run asks for, filling it, joining shards.

The work of ``rec-gym precompute`` (:mod:`rec_gym.cli.precompute`, which opens the env's task and
reads the options; see it for the command and its options) and of its ``--ray`` pool
(:mod:`rec_gym.feedback.distributed`). ``task`` is anything with the ``dataset``, ``rows``, ``kb``,
``backend`` and ``table`` of a :class:`~rec_gym.envs.task.Re2LLMTask`; ``args`` holds the command's
options (``max_hints``, ``sets_per_session``, ``sessions_per_batch``, ``save_every``, ``no_progress``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rec_gym.feedback.table import NO_RANKING, UNKNOWN, FeedbackTable, set_columns
from rec_gym.llm.protocol import BackendConfigError, BackendUnavailable
from rec_gym.llm.response_cache import CachedBackend

_SHARD_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)$")


def shard_path(table_path: Path, index: int, count: int) -> Path:
    return table_path.with_name(f"{table_path.stem}.shard-{index}-of-{count}{table_path.suffix}")


def shard_rows(n_sessions: int, index: int, count: int) -> np.ndarray:
    """Table rows of shard ``index`` of ``count``: contiguous blocks whose sizes differ by at most one."""
    return np.array_split(np.arange(n_sessions), count)[index]


def keeps_response_cache(backend: Any, response_cache: str | None, no_response_cache: bool) -> bool:
    """Whether ``backend``'s answers go through a response cache (``--response-cache``, ``--no-response-cache``):
    yes unless switched off, or the backend is ``cheap_and_deterministic`` and no cache file was named."""
    if no_response_cache:
        return False
    return bool(response_cache) or not getattr(backend, "cheap_and_deterministic", False)


def check_set_options(args: argparse.Namespace) -> None:
    """``--max-hints`` (as resolved by :func:`rec_gym.cli.precompute.open_task`) and ``--sets-per-session`` are at least 1."""
    if args.max_hints < 1 or (args.sets_per_session is not None and args.sets_per_session < 1):
        raise ValueError(f"--max-hints must be >= 1 and --sets-per-session >= 1; got {args.max_hints} and "
                         f"{args.sets_per_session}")


def wanted_pairs(task: Any, table: FeedbackTable, rows: np.ndarray, args: argparse.Namespace
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(columns, wanted)``: what this run must fill in ``table``.

    ``columns`` (int64 ``(C,)``) are the table columns of every set of up to ``--max-hints`` hints
    (:func:`~rec_gym.feedback.table.set_columns` order: no hint, each hint, then the larger sets), found
    by key, after taking in what other processes saved, and added to ``table`` where absent; ``wanted``
    (bool ``(len(rows), C)``) marks the entries of ``rows`` x ``columns`` this run fills. Other columns
    of the file (another process's sets) are none of this run's business, and a column keeps its index
    while the table grows, so ``columns`` stays right when a later fill takes in more of them.
    """
    table.refresh()
    columns = np.array(table.add_columns(set_columns(task.kb, args.max_hints)), dtype=np.int64)
    n_single = len(task.kb) + 1
    n_sets = columns.size - n_single
    wanted = np.zeros((rows.size, columns.size), dtype=bool)
    wanted[:, :n_single] = True
    if args.sets_per_session is None or args.sets_per_session >= n_sets:
        wanted[:, n_single:] = True
    else:
        for k, row in enumerate(rows):
            rng = np.random.default_rng([int(task.rows[row]), n_sets, args.sets_per_session])
            wanted[k, n_single + rng.choice(n_sets, size=args.sets_per_session, replace=False)] = True
    return columns, wanted


def wanted_codes(table: FeedbackTable, rows: np.ndarray, columns: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """int16 ``(wanted.sum(),)``: the rank codes of the ``wanted`` entries of ``rows`` x ``columns``."""
    return table.ranks[np.ix_(rows, columns)][wanted]


def announce(task: Any, table: FeedbackTable, rows: np.ndarray, columns: np.ndarray, wanted: np.ndarray,
             args: argparse.Namespace) -> None:
    """Print how many prompts the run asks for and how many of them the table already knows."""
    total = int(wanted.sum())
    per_session = wanted.sum(axis=1)
    sizes = f"{per_session.min()}" if per_session.min() == per_session.max() else f"{per_session.min()}-{per_session.max()}"
    print(f"{rows.size} sessions x {sizes} prompt variants (no hint, each hint, and sets of up to {args.max_hints} of "
          f"{len(task.kb)} hints) = {total} prompts", flush=True)
    known = int(np.count_nonzero(wanted_codes(table, rows, columns, wanted) != UNKNOWN))
    print(f"{table.path}: {known}/{total} (session, prompt) pairs known before this run", flush=True)


def session_groups(wanted: np.ndarray) -> list[list[int]]:
    """Indices of the sessions (rows of ``wanted``) that want the same columns, group by group, in order."""
    groups: dict[bytes, list[int]] = {}
    for k in range(wanted.shape[0]):
        groups.setdefault(np.packbits(wanted[k]).tobytes(), []).append(k)
    return list(groups.values())


def finish(table: FeedbackTable, rows: np.ndarray, columns: np.ndarray, wanted: np.ndarray, status: int, filled: int,
           seconds: float, calls: str, counters: dict[str, dict[str, int]]) -> int:
    """Save ``table``, print what it knows of the run's pairs, ``calls`` and the backend's ``counters``
    (``{"failures": {cause: n}, "retries": {...}}``); the exit status (1 when pairs are still unknown)."""
    table.save()
    codes = wanted_codes(table, rows, columns, wanted)
    known, no_ranking = int(np.count_nonzero(codes != UNKNOWN)), int(np.count_nonzero(codes == NO_RANKING))
    total = int(wanted.sum())
    print(f"{table.path}: {known}/{total} pairs known ({no_ranking} with no usable ranking); {filled} filled by this run"
          f" in {seconds:.2f} s{f' ({seconds / filled * 1e6:.1f} us per pair)' if filled else ''}{calls}", flush=True)
    if not status and known < total:
        status = 1
    for label, counts in counters.items():
        if counts:
            print(f"backend {label} by cause: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), flush=True)
    return status


def fill(task: Any, table: FeedbackTable, rows: np.ndarray, args: argparse.Namespace, cached: CachedBackend | None) -> int:
    columns, wanted = wanted_pairs(task, table, rows, args)
    announce(task, table, rows, columns, wanted, args)
    status = filled = 0
    started = time.perf_counter()
    try:
        # Sessions that want the same columns are filled together (every session, when nothing is sampled).
        groups = session_groups(wanted)
        for members in groups:
            filled += table.fill(task.dataset, task.backend, table_rows=rows[members],
                                 columns=columns[wanted[members[0]]],
                                 progress=not args.no_progress and len(groups) == 1,
                                 sessions_per_batch=args.sessions_per_batch, autosave_every=args.save_every)
    except BackendUnavailable as exc:
        print(f"stopped: {len(exc.unsettled)} request(s) never got an answer and nothing was stored for them ({exc}). "
              "Run the same command again to continue.", file=sys.stderr)
        status = 1
    except BackendConfigError as exc:
        print(f"stopped: {exc}.", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("interrupted; what is finished is kept. Run the same command again to continue.", file=sys.stderr)
        status = 130
    seconds = time.perf_counter() - started
    calls = f"; backend computed {cached.misses}, response cache answered {cached.hits}" if cached else ""
    counters = {label: dict(getattr(task.backend, label, None) or {}) for label in ("failures", "retries")}
    status = finish(table, rows, columns, wanted, status, filled, seconds, calls, counters)
    if cached is not None and cached.damaged:
        print(f"{cached.damaged} damaged response-cache row(s) were computed again", flush=True)
    return status


def merge(task: Any, path: Path, args: argparse.Namespace) -> int:
    provenance, rows = task.table.provenance, task.rows
    shards: dict[int, dict[int, Path]] = {}
    for file in path.parent.glob(f"{path.stem}.shard-*-of-*{path.suffix}"):
        match = _SHARD_NAME.search(file.name[:-len(path.suffix)] if path.suffix else file.name)
        if match:
            shards.setdefault(int(match.group(2)), {})[int(match.group(1))] = file
    if len(shards) != 1:
        found = sorted(str(f) for files in shards.values() for f in files.values())
        raise ValueError(f"--merge needs the shard files of exactly one --shard I/N count beside {path}; found {found or 'none'}")
    (count, files), = shards.items()
    missing = [i for i in range(count) if i not in files]
    if missing:
        raise ValueError(f"--merge: shard(s) {missing} of {count} are missing; expected e.g. {shard_path(path, missing[0], count)}")
    table = task.table.opened_at(path)
    for i in range(count):
        table.merge_from(FeedbackTable.load(files[i], expected=provenance, rows=rows, max_rank=table.max_rank))
    every_row = np.arange(len(rows))
    columns, wanted = wanted_pairs(task, table, every_row, args)
    table.save()
    known, total = int(np.count_nonzero(wanted_codes(table, every_row, columns, wanted) != UNKNOWN)), int(wanted.sum())
    print(f"{path}: merged {count} shards; {known}/{total} pairs known", flush=True)
    if known < total:
        print(f"{total - known} pairs are still unknown: finish the shards (run them again) and merge again",
              file=sys.stderr)
        return 1
    return 0
