"""Aggregate scores over seeds with rliable (Agarwal et al., NeurIPS 2021), and a paired interval it lacks.

Scores are float ``(n_runs, n_tasks)`` arrays: one row per seed, one column per environment. The
interquartile mean (IQM) is rliable's ``metrics.aggregate_iqm`` (the mean of the middle 50% of all
scores, ``scipy.stats.trim_mean`` with 0.25 cut from each end). Confidence intervals are rliable's
``library.get_interval_estimates``: the stratified bootstrap (runs resampled with replacement *within
each task*, the aggregate recomputed) and the percentile interval of those replicates.

Those intervals describe the spread over training seeds only: every method is scored on the same
test sessions. :func:`paired_difference_ci` adds the sampling of those sessions when comparing two
methods: it resamples the sessions (the same draw for both methods, which keeps the pairing) and
each method's seeds, so a difference whose interval excludes 0 would likely hold on new sessions.
rliable has no such two-level paired bootstrap, so it is computed here, in chunks of at most
:data:`CHUNK_VALUES` drawn numbers, so memory stays a few tens of MB whatever the number of
replicates or sessions.

Every bootstrap draws :data:`BOOTSTRAP_REPS` replicates by default.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

BOOTSTRAP_REPS = 50_000
CHUNK_VALUES = 2_000_000  # random draws held in memory at once (16 MB of int64)


def _matrix(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"scores must be a non-empty (n_runs,) or (n_runs, n_tasks) array, got shape {s.shape}")
    return s


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all scores (rliable's ``aggregate_iqm``): drop the lowest and highest ``floor(n / 4)``, average the rest."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(_matrix(scores)))


def mean(scores: np.ndarray) -> float:
    """Mean over all runs and tasks (rliable's ``aggregate_mean`` averages per task first: the same for equal runs per task)."""
    return float(_matrix(scores).mean())


def _chunks(reps: int, per_rep: int) -> list[int]:
    """Replicate counts that add up to ``reps``, each chunk drawing at most ``CHUNK_VALUES`` numbers."""
    size = max(1, CHUNK_VALUES // max(per_rep, 1))
    return [min(size, reps - start) for start in range(0, reps, size)]


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def stratified_bootstrap_ci(scores: np.ndarray, aggregate: Callable[[np.ndarray], float] = iqm,
                            reps: int = BOOTSTRAP_REPS, confidence: float = 0.95,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile ``confidence`` interval of ``aggregate(scores)`` under rliable's stratified bootstrap.

    Each replicate draws, for every task (column) separately, ``n_runs`` runs with replacement.
    One run per task gives the degenerate interval ``(a, a)`` without resampling: every replicate is
    the sample itself.
    """
    from rliable import library

    s = _matrix(scores)
    if s.shape[0] == 1:
        value = float(aggregate(s))
        return value, value
    # rliable draws its resampling indices from NumPy's global generator (not its random_state), so
    # it is seeded here and given back as it was.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        _, intervals = library.get_interval_estimates({"scores": s}, lambda x: np.array([aggregate(x)]), reps=reps,
                                                      confidence_interval_size=confidence)
    finally:
        np.random.set_state(state)
    low, high = intervals["scores"][:, 0]
    return float(low), float(high)


def summarize(scores: np.ndarray, reps: int = BOOTSTRAP_REPS, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean and IQM with their stratified-bootstrap intervals: keys ``mean``, ``mean_lo``, ``mean_hi``, ``iqm``, ``iqm_lo``, ``iqm_hi``."""
    mean_lo, mean_hi = stratified_bootstrap_ci(scores, mean, reps, confidence, seed)
    iqm_lo, iqm_hi = stratified_bootstrap_ci(scores, iqm, reps, confidence, seed)
    return {"mean": mean(scores), "mean_lo": mean_lo, "mean_hi": mean_hi,
            "iqm": iqm(scores), "iqm_lo": iqm_lo, "iqm_hi": iqm_hi, "n_runs": int(_matrix(scores).shape[0])}


def paired_difference_ci(a: np.ndarray, b: np.ndarray, reps: int = BOOTSTRAP_REPS, confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """``(difference, low, high)``: the mean per-session score of A minus that of B, with its percentile interval.

    ``a`` is float ``(n_runs_a, n_sessions)`` (one row per seed of method A), ``b`` is ``(n_runs_b,
    n_sessions)`` on the same sessions in the same order. The difference is the mean over sessions
    of (A's mean over its seeds - B's mean over its seeds). Each bootstrap replicate draws, with
    replacement, A's seeds, B's seeds, and one set of sessions shared by A and B.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.size == 0 or b.size == 0:
        raise ValueError(f"a and b must be non-empty (n_runs, n_sessions) arrays over the same sessions, "
                         f"got shapes {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    n_sessions = a.shape[1]

    def counts(chunk: int, n: int) -> np.ndarray:  # (chunk, n): how often each of n items is drawn per replicate
        offsets = (np.arange(chunk) * n)[:, None]
        drawn = rng.integers(n, size=(chunk, n)) + offsets
        return np.bincount(drawn.ravel(), minlength=chunk * n).reshape(chunk, n).astype(np.float64)

    values = []
    for chunk in _chunks(reps, n_sessions):
        sessions = counts(chunk, n_sessions)
        # Per replicate r: mean over drawn sessions of (A's mean over drawn seeds - B's), computed as
        # seed weights . (scores @ session counts), so no (chunk, n_sessions) difference is formed.
        a_side = (counts(chunk, len(a)) * (sessions @ a.T)).sum(axis=1) / len(a)
        b_side = (counts(chunk, len(b)) * (sessions @ b.T)).sum(axis=1) / len(b)
        values.append((a_side - b_side) / n_sessions)
    low, high = _percentile_interval(np.concatenate(values), confidence)
    return float(a.mean() - b.mean()), low, high
