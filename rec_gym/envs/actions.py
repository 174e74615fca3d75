"""Turning what agents pass to ``step`` into a checked action index."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces


def as_action(action: object, space: spaces.Discrete) -> int:
    """``action`` as a Python int, when ``space.contains(action)`` and it is not a bool.

    That is what Gymnasium's ``Discrete.contains`` accepts: a Python int, or a NumPy integer scalar or
    0-d integer array whose dtype casts safely to the space's (so not ``np.uint64`` for an int64 space),
    inside the space. Bools are refused although ``contains(True)`` holds (``bool`` subclasses ``int``):
    ``True`` is not action 1. Floats (``3.0``), strings and one-element arrays (``np.array([3])``) are
    refused too. Raises ``ValueError`` naming the action and the valid range.
    """
    # A plain int, what most callers pass, is checked here: this skips contains()'s NumPy conversions
    # and the OverflowError it raises for an int beyond int64.
    if type(action) is int:
        if 0 <= action < space.n:
            return action
    elif not isinstance(action, (bool, np.bool_)) and space.contains(action):
        return int(action)  # type: ignore[call-overload]
    raise ValueError(_refusal(action, space))


def _refusal(action: object, space: spaces.Discrete) -> str:
    """Why ``action`` is not an action of ``space``, naming it and the valid range."""
    valid = f"valid actions are 0..{int(space.n) - 1}"
    integral = (isinstance(action, int) and not isinstance(action, bool)) or (
        isinstance(action, (np.integer, np.ndarray)) and action.shape == () and np.issubdtype(action.dtype, np.integer))
    if not integral:
        return (f"action {action!r} is not an int: {valid}, each a Python int or a NumPy integer scalar "
                "(not a bool, float, string or array)")
    if 0 <= int(action) < space.n:  # type: ignore[call-overload]
        return (f"action {action!r}: its dtype {action.dtype} does not cast safely to the action space's "  # type: ignore[union-attr]
                f"{space.dtype}, so Discrete.contains refuses it; pass int(action)")
    return f"action {action!r} is out of range: {valid}"
