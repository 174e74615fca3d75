"""From interactions to sessions, and from sessions to a :class:`SessionDataset` with fixed candidates.

The protocol (see ``DESIGN.md``):

- a session is one user's interactions within one calendar day (UTC), in time order, with at
  least 4 items; the target is the last item, the history the rest, the most recent 20 kept;
- candidates are the target plus ``n_candidates - 1`` negatives drawn uniformly, without
  duplicates, from the catalog items that are neither in the history nor the target, shuffled;
  a session that comes with its own candidates keeps them as given, whatever their number, with
  repeated items dropped (first occurrence kept, one warning per dataset);
- each session's draw comes from its own generator seeded by ``(seed, session_id)`` through a
  stable hash, so a session keeps its candidates whatever else changes (``n_train``, the
  splits, the other sessions);
- sessions whose source fixes a split keep it; the others are split by a seeded permutation.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from itertools import chain
from typing import Sequence

import numpy as np

from rec_gym.data.types import Catalog, Item, SessionDataset
from rec_gym.storage import stable_hash

SPLITS = ("train", "val", "test")
SECONDS_PER_DAY = 86_400
MAX_HISTORY = 20  # history items kept per session by default (the most recent ones)


@dataclass(frozen=True)
class RawSession:
    """One session as a loader reads it, before truncation, candidates and splits.

    ``history`` and ``target`` are catalog indices (positions in ``Catalog.items``), history
    oldest first. ``split`` is set when the source fixes it; ``candidates``, when present, are
    used exactly as given (they must contain the target once).
    """

    session_id: str
    history: tuple[int, ...]
    target: int
    split: str | None = None
    candidates: tuple[int, ...] | None = None


def sessionize_by_day(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray, min_length: int = 4, *,
                      max_history: int | None = None) -> list[RawSession]:
    """Cut interactions into sessions: one user, one UTC calendar day, at least ``min_length`` items.

    Args:
        user: ``(n,)`` user ids (any integer or string dtype).
        item: ``(n,)`` catalog indices of the interacted items.
        timestamp: ``(n,)`` Unix seconds (UTC).
        min_length: fewest interactions a day must have to make a session (history + target).
        max_history: when given, keep only the most recent ``max_history`` history items already
            here (``assemble`` truncates anyway; this only saves memory on very large datasets).

    Returns:
        Sessions ordered by user then day; ``session_id`` is ``"<user>:<YYYY-MM-DD>"``, the target is
        the day's last interaction and the history the ones before it. Interactions with the same
        timestamp keep their input order (the sort is stable).
    """
    user = np.asarray(user)
    item = np.asarray(item, dtype=np.int64)
    timestamp = np.asarray(timestamp, dtype=np.int64)
    if not (user.ndim == item.ndim == timestamp.ndim == 1 and len(user) == len(item) == len(timestamp)):
        raise ValueError(f"user, item and timestamp must be 1-D arrays of one length, got shapes "
                         f"{user.shape}, {item.shape}, {timestamp.shape}")
    if min_length < 2:
        raise ValueError(f"min_length must be at least 2 (one history item and the target), got {min_length}")
    if len(user) == 0:
        return []
    # Floor division gives the UTC day also for timestamps before 1970.
    day = timestamp // SECONDS_PER_DAY
    # lexsort is stable and sorts by the last key first: user, then time.
    order = np.lexsort((timestamp, user))
    user, item, day = user[order], item[order], day[order]
    starts_new = np.ones(len(user), dtype=bool)
    starts_new[1:] = (user[1:] != user[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(starts_new)
    ends = np.append(starts[1:], len(user))
    keep = (ends - starts) >= min_length
    starts, ends = starts[keep], ends[keep]
    dates = day[starts].astype("datetime64[D]").astype(str)
    users = user[starts].tolist()
    sessions = []
    for start, end, uid, date in zip(starts.tolist(), ends.tolist(), users, dates.tolist()):
        first = start if max_history is None else max(start, end - 1 - max_history)
        # Slicing per session, not one .tolist() of all items: ml-25m has 25M interactions.
        sessions.append(RawSession(session_id=f"{uid}:{date}", history=tuple(item[first:end - 1].tolist()),
                                   target=int(item[end - 1])))
    return sessions


def session_rng(seed: int, session_id: str, purpose: str = "candidates") -> np.random.Generator:
    """A generator that depends only on ``(purpose, seed, session_id)``, the same in every process.

    Python's ``hash()`` is salted per process, so it cannot be used here.
    """
    digest = hashlib.sha256(f"{purpose}\0{seed}\0{session_id}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def draw_candidates(target: int, history: Sequence[int] | np.ndarray, n_items: int, n_candidates: int,
                    rng: np.random.Generator) -> np.ndarray:
    """int32 ``(n_candidates,)``: ``target`` plus distinct negatives not in ``history``, in random order.

    Negatives are uniform over the ``n_items`` catalog indices minus the history and the target;
    the target's position is uniform too. Raises ``ValueError`` when fewer than
    ``n_candidates - 1`` items are left to draw from.
    """
    excluded = {int(i) for i in history}
    excluded.add(int(target))
    n_negatives = n_candidates - 1
    n_pool = n_items - len(excluded)
    if n_negatives > n_pool:
        raise ValueError(
            f"cannot draw {n_negatives} distinct negatives: the catalog has {n_items} items and {len(excluded)} of "
            f"them are in the session (history + target); use n_candidates <= {n_pool + 1} or a larger catalog")
    if 4 * n_negatives <= n_pool:
        # Few negatives from a large pool: rejection of excluded and repeated draws keeps the
        # sample uniform and costs about n_negatives draws, where a permutation costs n_items.
        negatives: list[int] = []
        taken = set(excluded)
        while len(negatives) < n_negatives:
            for item in rng.integers(0, n_items, size=2 * n_negatives).tolist():
                if item not in taken:
                    taken.add(item)
                    negatives.append(item)
                    if len(negatives) == n_negatives:
                        break
    else:
        pool = np.setdiff1d(np.arange(n_items), np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
        negatives = rng.choice(pool, size=n_negatives, replace=False).tolist()
    # The negatives are already in random order, so a uniform slot for the target shuffles the whole set.
    negatives.insert(int(rng.integers(n_negatives + 1)), int(target))
    return np.asarray(negatives, dtype=np.int32)


def with_popularity(catalog: Catalog, sessions: Sequence[RawSession], max_history: int | None = None) -> Catalog:
    """The catalog with ``attributes["popularity"]`` in [0, 1] filled where an item lacks it.

    popularity = log(1 + count) / log(1 + max count), counting each item's occurrences in all
    sessions: the target and the history (its most recent ``max_history`` items when given,
    so that a loader truncating early changes nothing). Items are frozen, so new items and a
    new catalog are built.
    """
    if all("popularity" in item.attributes for item in catalog.items):
        return catalog
    first = -max_history if max_history else 0
    seen = np.fromiter(chain.from_iterable((*s.history[first:], s.target) for s in sessions), dtype=np.int64)
    counts = np.bincount(seen, minlength=len(catalog))
    top = counts.max() if len(counts) else 0
    popularity = np.log1p(counts) / math.log1p(top) if top > 0 else np.zeros(len(catalog))
    items = [item if "popularity" in item.attributes else
             Item(item.item_id, item.title, {**item.attributes, "popularity": round(float(p), 6)})
             for item, p in zip(catalog.items, popularity.tolist())]
    return Catalog(items, domain=catalog.domain)


def _check_session(session: RawSession, n_items: int) -> None:
    where = f"session {session.session_id!r}"
    indices = list(session.history) + [session.target]
    bad = [i for i in indices if not 0 <= int(i) < n_items]
    if bad:
        raise ValueError(f"{where}: item index {bad[0]} is outside the catalog (0..{n_items - 1})")
    if session.split is not None and session.split not in SPLITS:
        raise ValueError(f"{where}: split {session.split!r} is not one of {SPLITS}")
    if session.candidates is None:
        return
    bad = [i for i in session.candidates if not 0 <= int(i) < n_items]
    if bad:
        raise ValueError(f"{where}: candidate index {bad[0]} is outside the catalog (0..{n_items - 1})")
    if session.target not in session.candidates:
        raise ValueError(f"{where}: its candidates do not contain the target (catalog index {session.target})")


def without_repeats(name: str, sessions: list[RawSession]) -> list[RawSession]:
    """``sessions`` with each given candidate set's repeated items dropped (first occurrence kept).

    Real candidate files sometimes list an item twice; one warning says how many were dropped.
    """
    dropped, touched, out = 0, 0, []
    for session in sessions:
        if session.candidates is not None and len(set(session.candidates)) != len(session.candidates):
            unique = tuple(dict.fromkeys(session.candidates))
            dropped += len(session.candidates) - len(unique)
            touched += 1
            session = replace(session, candidates=unique)
        out.append(session)
    if dropped:
        warnings.warn(f"dataset {name!r}: dropped {dropped} repeated candidate(s) in {touched} session(s) "
                      f"(the first occurrence of each item is kept)", stacklevel=3)
    return out


def assign_splits(sessions: Sequence[RawSession], seed: int,
                  split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """``(n,)`` split names: a session's own split, else train/val/test by a seeded permutation.

    Of the ``m`` sessions without a split, ``round(m * r_train)`` go to train, ``round(m * r_val)``
    to val and the rest to test.
    """
    ratios = tuple(float(r) for r in split_ratios)
    if len(ratios) != 3 or min(ratios) < 0 or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(f"split_ratios must be three non-negative numbers summing to 1, got {split_ratios}")
    split = np.array([s.split or "" for s in sessions], dtype="<U5")
    free = np.flatnonzero(split == "")
    order = free[session_rng(seed, "", purpose="split").permutation(free.size)]
    n_train = round(free.size * ratios[0])
    n_val = min(round(free.size * ratios[1]), free.size - n_train)
    split[order[:n_train]] = "train"
    split[order[n_train:n_train + n_val]] = "val"
    split[order[n_train + n_val:]] = "test"
    return split


def assemble(name: str, catalog: Catalog, sessions: list[RawSession], *, n_candidates: int = 50, seed: int = 0,
             n_train: int | None = None, max_history: int = MAX_HISTORY,
             split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> SessionDataset:
    """Truncate histories, fix candidates and splits, subsample train, and pack the arrays.

    Args:
        name: dataset name recorded in the result and its fingerprint.
        catalog: the items; sessions refer to them by index.
        sessions: the sessions in a stable order (the split permutation depends on it).
        n_candidates: candidates per session, target included, where the package draws them;
            sessions that come with candidates keep theirs (the array is padded with -1 to the largest set).
        seed: seeds candidates (per session), the split permutation and the ``n_train`` draw.
        n_train: keep only this many randomly chosen train sessions (the paper's few-shot 500);
            val and test are kept whole.
        max_history: keep the most recent ``max_history`` history items.
        split_ratios: train/val/test shares for sessions whose source fixes no split.

    Returns:
        A :class:`SessionDataset` (arrays described there) whose catalog has ``popularity`` on every
        item. Negatives exclude the kept history (what the LLM is shown) and the target.
    """
    if not sessions:
        raise ValueError(f"dataset {name!r} has no sessions to assemble")
    if max_history < 1:
        raise ValueError(f"max_history must be at least 1, got {max_history}")
    n_items = len(catalog)
    for session in sessions:
        _check_session(session, n_items)
    sessions = without_repeats(name, sessions)
    drawn = any(s.candidates is None for s in sessions)
    if drawn and n_candidates < 1:
        raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
    if drawn and n_candidates > len(catalog):
        raise ValueError(f"n_candidates={n_candidates} exceeds the catalog of dataset {name!r} "
                         f"({len(catalog)} items); use n_candidates <= {len(catalog)}")
    ids = [str(s.session_id) for s in sessions]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, count in Counter(ids).items() if count > 1)
        raise ValueError(f"dataset {name!r}: session id {duplicate!r} occurs more than once; session ids must be unique")

    catalog = with_popularity(catalog, sessions, max_history)
    split = assign_splits(sessions, seed, split_ratios)
    rows = np.arange(len(sessions))
    if n_train is not None:
        train_rows = np.flatnonzero(split == "train")
        if not 0 <= n_train <= train_rows.size:
            raise ValueError(f"n_train={n_train} but dataset {name!r} has {train_rows.size} train sessions; "
                             f"use n_train <= {train_rows.size} or n_train=None for all")
        chosen = session_rng(seed, "", purpose="n_train").choice(train_rows, size=n_train, replace=False)
        rows = np.sort(np.concatenate([np.flatnonzero(split != "train"), chosen]))

    kept = [sessions[r] for r in rows.tolist()]
    width = max(1, max(min(len(s.history), max_history) for s in kept))
    history = np.full((len(kept), width), -1, dtype=np.int32)
    target = np.empty(len(kept), dtype=np.int32)
    given = [len(s.candidates) for s in kept if s.candidates is not None]
    candidates = np.full((len(kept), max([*given, n_candidates] if drawn else given)), -1, dtype=np.int32)
    for row, session in enumerate(kept):
        recent = session.history[len(session.history) - max_history:] if len(session.history) > max_history \
            else session.history
        history[row, :len(recent)] = recent
        target[row] = session.target
        if session.candidates is not None:
            candidates[row, :len(session.candidates)] = session.candidates
        else:
            candidates[row, :n_candidates] = draw_candidates(session.target, recent, n_items, n_candidates,
                                              session_rng(seed, str(session.session_id)))
    session_ids = np.array([ids[r] for r in rows.tolist()], dtype=str)
    split = split[rows]
    fingerprint = stable_hash(
        name, _digest([item.item_id for item in catalog.items]), _digest([item.title for item in catalog.items]),
        _digest_arrays(history, target, candidates, split, session_ids), n_candidates, seed, n_train, max_history)
    return SessionDataset(name=name, catalog=catalog, history=history, target=target, candidates=candidates,
                          split=split, session_ids=session_ids, fingerprint=fingerprint)


def _digest(strings: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(strings).encode("utf-8")).hexdigest()


def _digest_arrays(*arrays: np.ndarray) -> str:
    """sha256 of arrays' shapes and contents, independent of the machine's byte order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(repr(array.shape).encode())
        if array.dtype.kind == "U":
            digest.update("\0".join(array.ravel().tolist()).encode("utf-8"))
        else:
            digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
    return digest.hexdigest()
