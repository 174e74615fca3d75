"""Ranking metrics for a single relevant item.

Ranks are 1-based positions of the target in the LLM's list; 0 means the target is absent
from the list. Every function accepts a scalar or an array of ranks and returns float(s).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_KS = (1, 5, 10)


def _ranks(rank: ArrayLike) -> np.ndarray:
    r = np.asarray(rank)
    # A boolean array is a hit mask, not ranks: reading True as rank 1 would report every hit as a top-1.
    if r.dtype.kind not in "iuf":
        raise TypeError(f"ranks must be integers (1-based, 0 = absent), got {r.dtype} values: {rank!r}")
    if r.dtype.kind == "f":
        if not np.all(np.isfinite(r)) or np.any(r != np.floor(r)):
            raise ValueError(f"ranks must be whole numbers (1-based, 0 = absent), got {rank!r}")
        r = r.astype(np.int64)
    if np.any(r < 0):
        raise ValueError(f"ranks must be >= 0 (1-based, 0 = absent), got {rank!r}")
    return r


def hit_at_k(rank: ArrayLike, k: int = 10) -> np.ndarray | float:
    """1.0 where the target is ranked within the top ``k``, else 0.0."""
    r = _ranks(rank)
    out = ((r >= 1) & (r <= k)).astype(np.float64)
    return float(out) if out.ndim == 0 else out


def ndcg_at_k(rank: ArrayLike, k: int = 10) -> np.ndarray | float:
    """``1 / log2(rank + 1)`` where the target is within the top ``k``, else 0.0 (single target, so IDCG = 1)."""
    r = _ranks(rank)
    inside = (r >= 1) & (r <= k)
    out = np.where(inside, 1.0 / np.log2(np.maximum(r, 1) + 1.0), 0.0)
    return float(out) if out.ndim == 0 else out


def ranking_report(ranks: ArrayLike, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@k and NDCG@k over a set of sessions, e.g. ``{"HR@1": .., "NDCG@10": ..}``."""
    r = np.atleast_1d(_ranks(ranks))
    if r.size == 0:
        raise ValueError("ranking_report needs at least one rank")
    report: dict[str, float] = {}
    for k in ks:
        report[f"HR@{k}"] = float(np.mean(hit_at_k(r, k)))
    for k in ks:
        report[f"NDCG@{k}"] = float(np.mean(ndcg_at_k(r, k)))
    return report
