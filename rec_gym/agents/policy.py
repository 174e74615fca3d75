"""The policy protocol: anything with SB3's ``predict`` is a retrieval policy.

Stable-Baselines3 models (``PPO``, ``DQN``, ``A2C``, ...) already satisfy :class:`Policy`; a custom
agent only needs the same method. :func:`predict_actions` is how evaluation asks a policy for the
actions of many sessions at once: one batched call when the policy accepts a batch, else one call
per observation.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """What :func:`rec_gym.agents.evaluate` needs from an agent (SB3's ``BasePolicy.predict`` signature).

    ``observation`` is float32 ``(d,)`` for one session or ``(n, d)`` for a batch; the returned
    action is an int (or ``(n,)`` ints for a batch) in ``0..K`` (0 = no hint). ``state`` is the
    recurrent state, ``None`` for feed-forward policies.
    """

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray | int, Any]:
        ...


def predict_actions(policy: Policy, observations: np.ndarray, deterministic: bool = True) -> np.ndarray:
    """Actions of ``policy`` for float32 ``(n, d)`` observations, as int64 ``(n,)``.

    Tries one batched ``predict`` (what SB3 models and the built-in baselines do); a policy that
    raises on a batch or does not return ``n`` actions is asked once per observation instead.
    """
    observations = np.asarray(observations, dtype=np.float32)
    n = len(observations)
    try:
        actions, _ = policy.predict(observations, deterministic=deterministic)
        actions = np.asarray(actions).reshape(-1)
        if actions.shape == (n,):
            return _as_int_actions(actions, policy)
    except Exception:  # noqa: BLE001  (a single-observation policy may fail on a batch in any way)
        pass
    actions = np.empty(n, dtype=np.int64)
    for i, obs in enumerate(observations):
        action, _ = policy.predict(obs, deterministic=deterministic)
        actions[i] = _as_int_actions(np.asarray(action).reshape(-1), policy)[0]
    return actions


def _as_int_actions(actions: np.ndarray, policy: Policy) -> np.ndarray:
    if actions.size and not np.all(np.asarray(actions, dtype=np.float64) == np.floor(np.asarray(actions, dtype=np.float64))):
        raise ValueError(f"{type(policy).__name__}.predict returned non-integer actions {actions[:5]!r}; "
                         "return hint indices 0..K (0 = no hint)")
    return np.asarray(actions).astype(np.int64)
