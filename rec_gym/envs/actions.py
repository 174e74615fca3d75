"""Turning what agents pass to ``step`` into a checked action index."""

from __future__ import annotations

import operator

import numpy as np


def as_action(action: object, n_actions: int) -> int:
    """An int in ``[0, n_actions)`` from a Python int, a NumPy integer or a one-element integer array."""
    try:
        a = operator.index(action)  # type: ignore[arg-type]
    except TypeError:
        arr = np.asarray(action)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"action {action!r} is not an integer in [0, {n_actions - 1}] "
                             f"(0 = no hint, k = hint k of the knowledge base)") from None
        a = int(arr.reshape(()))
    if not 0 <= a < n_actions:
        raise ValueError(f"action {a} is out of range: valid actions are 0..{n_actions - 1} "
                         f"(0 = no hint, k = hint k of the knowledge base)")
    return a
