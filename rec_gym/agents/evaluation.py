"""Evaluate any retrieval policy on every session of a split, deterministically.

The same code scores SB3 models, the baselines and custom agents (:class:`~rec_gym.agents.policy.Policy`).
By default it reads the feedback table directly: the policy is asked for the actions of all the
split's observations (one batched ``predict`` where it accepts a batch), the missing table entries
are filled by the env's backend, and the metrics come from the ranks. ``mode="step"`` instead walks the
env itself, ``reset(options={"session_index": i})`` then one ``step``, for policies that need to see
the env as it runs; both give the same numbers for a feed-forward policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rec_gym.agents.policy import Policy, predict_actions
from rec_gym.agents.tasks import resolve_task
from rec_gym.envs.task import Re2LLMTask
from rec_gym.metrics import ranking_report

METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@1", "NDCG@5", "NDCG@10", "mean_reward", "beats_no_hint", "hurts_no_hint")


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured, with the per-session arrays it came from.

    ``metrics`` holds ``HR@1/5/10`` and ``NDCG@1/5/10`` of the true item with the chosen hints,
    ``mean_reward`` (in the env's reward mode), and ``beats_no_hint`` / ``hurts_no_hint``: the share of
    sessions where the chosen hint gives a strictly higher / lower NDCG@10 than no hint.
    The arrays are ``(n,)`` over the split's sessions in order: ``actions``, ``ranks`` and
    ``baseline_ranks`` (1-based, 0 = not in the LLM's list) and ``rewards``.
    """

    split: str
    metrics: dict[str, float]
    actions: np.ndarray
    ranks: np.ndarray
    baseline_ranks: np.ndarray
    rewards: np.ndarray
    env_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    @property
    def n_sessions(self) -> int:
        return len(self.actions)

    def action_counts(self, n_actions: int | None = None) -> np.ndarray:
        """How often each action was chosen (``(n_actions,)``)."""
        return np.bincount(self.actions, minlength=n_actions or int(self.actions.max()) + 1)


def score_actions(task: Re2LLMTask, sessions: np.ndarray, actions: np.ndarray, env_id: str | None = None
                  ) -> EvaluationResult:
    """Metrics of playing ``actions[j]`` on session ``sessions[j]`` of ``task`` (fills missing table entries)."""
    sessions = np.asarray(sessions, dtype=np.int64)
    actions = np.asarray(actions, dtype=np.int64)
    if actions.shape != sessions.shape:
        raise ValueError(f"got {actions.shape} actions for {sessions.shape} sessions")
    if actions.size and (actions.min() < 0 or actions.max() >= task.n_actions):
        raise ValueError(f"actions must lie in 0..{task.n_actions - 1} (0 = no hint); got {actions.min()}..{actions.max()}")
    for a in np.unique(actions):
        # One fill per action keeps a lazy backend's requests grouped by session (prefix sharing).
        task.ensure(sessions[actions == a], np.unique([0, a]))
    ranks = np.asarray(task.rank(sessions, actions), dtype=np.int64)
    baseline = np.asarray(task.rank(sessions, np.zeros_like(actions)), dtype=np.int64)
    rewards = np.asarray(task.reward(ranks, baseline, actions), dtype=np.float64)
    gain = task.ndcg_of_rank[ranks] - task.ndcg_of_rank[baseline]
    metrics = ranking_report(ranks)
    metrics["mean_reward"] = float(rewards.mean())
    metrics["beats_no_hint"] = float(np.mean(gain > 0))
    metrics["hurts_no_hint"] = float(np.mean(gain < 0))
    return EvaluationResult(task.split, metrics, actions, ranks, baseline, rewards, env_id)


def evaluate(policy: Policy, env_or_id: Any, split: str = "test", env_kwargs: dict[str, Any] | None = None,
             mode: str = "table", max_sessions: int | None = None, deterministic: bool = True) -> EvaluationResult:
    """Score ``policy`` on every session of ``split`` (or the first ``max_sessions``).

    Args:
        policy: anything with SB3's ``predict(obs, deterministic=True) -> (action, state)``. A policy
            that also has ``predict_sessions(task, session_indices) -> actions`` (the
            :class:`~rec_gym.agents.baselines.Oracle`) is given the sessions instead.
        env_or_id: an env id (made with ``split`` and ``env_kwargs``), an env from ``gym.make`` (re-made
            on ``split`` if it is on another one), an SB3 ``DummyVecEnv`` of them, or a task.
        split: ``"train"``, ``"val"`` or ``"test"``.
        env_kwargs: keyword arguments of ``gym.make`` when ``env_or_id`` is an id.
        mode: ``"table"`` (batched, reads the feedback table) or ``"step"`` (one ``reset``/``step`` per session).
        max_sessions: evaluate only the split's first sessions (quick checks); default all.
        deterministic: passed to ``predict``.

    Returns:
        :class:`EvaluationResult`; ``result["NDCG@10"]`` etc.
    """
    if mode not in ("table", "step"):
        raise ValueError(f"mode={mode!r}; use 'table' or 'step'")
    task, env, created = resolve_task(env_or_id, split, env_kwargs)
    try:
        n = task.n_sessions if max_sessions is None else min(int(max_sessions), task.n_sessions)
        if n < 1:
            raise ValueError(f"split {task.split!r} has no sessions to evaluate")
        sessions = np.arange(n)
        if mode == "table":
            if hasattr(policy, "predict_sessions"):
                actions = np.asarray(policy.predict_sessions(task, sessions), dtype=np.int64)
            else:
                actions = predict_actions(policy, task.observations[:n], deterministic=deterministic)
        else:
            if env is None:
                raise ValueError("mode='step' needs an env, not a bare task")
            actions = _step_actions(policy, env, task, n, deterministic)
        env_id = env.spec.id if env is not None and env.spec is not None else None
        return score_actions(task, sessions, actions, env_id)
    finally:
        if created:
            env.close()


def _step_actions(policy: Policy, env: Any, task: Re2LLMTask, n: int, deterministic: bool) -> np.ndarray:
    actions = np.empty(n, dtype=np.int64)
    for i in range(n):
        obs, info = env.reset(options={"session_index": i})
        if hasattr(policy, "predict_sessions"):
            action = policy.predict_sessions(task, [info["session_index"]])[0]
        else:
            action, _ = policy.predict(obs, deterministic=deterministic)
        actions[i] = int(np.asarray(action).reshape(-1)[0])
        env.step(actions[i])
    return actions
