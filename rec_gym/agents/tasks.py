"""Getting at the :class:`~rec_gym.envs.task.Re2LLMTask` (sessions, observations, feedback table) of a split.

Evaluation and the table-based baselines read the feedback table directly; this module turns what
a user has in hand (an env id, a ``gym.make`` env, an SB3 ``DummyVecEnv`` or a task) into the task
of the split they ask for.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

import rec_gym  # noqa: F401  (registers the env ids)
from rec_gym.envs.arguments import check_env_id, check_env_kwargs
from rec_gym.envs.task import Re2LLMTask


def unwrap_env(env: Any) -> gym.Env | None:
    """The innermost Re2LLM env of ``env`` (a Gymnasium env or SB3's ``DummyVecEnv``), or ``None``."""
    if hasattr(env, "envs") and not isinstance(env, gym.Env):  # SB3 DummyVecEnv / Gymnasium SyncVectorEnv
        env = env.envs[0]
    inner = getattr(env, "unwrapped", None)
    return inner if hasattr(inner, "task") else None


def make_env(env_id: str, split: str, env_kwargs: dict[str, Any] | None = None, **extra: Any) -> gym.Env:
    """``gym.make(env_id, split=split, **env_kwargs)``, refusing an unknown id and a ``split`` inside ``env_kwargs``."""
    check_env_id(env_id)
    kwargs = dict(env_kwargs or {})
    if "split" in kwargs:
        raise ValueError(f"env_kwargs sets split={kwargs['split']!r}; pass the split as its own argument instead")
    check_env_kwargs(env_id, {**kwargs, **extra})
    return gym.make(env_id, split=split, **kwargs, **extra)


def resolve_task(env_or_id: Any, split: str | None, env_kwargs: dict[str, Any] | None = None
                 ) -> tuple[Re2LLMTask, gym.Env | None, bool]:
    """The task of ``split`` for an env id, env or task; returns ``(task, env, created)``.

    ``env`` is a single env on that split (``None`` when only a task was given) and ``created`` says
    whether this call made it (the caller then closes it). An env on another split is re-made from its
    spec with only ``split`` changed, so every other kwarg (dataset, llm, kb, seed, ...) carries over.
    """
    if isinstance(env_or_id, Re2LLMTask):
        if split is not None and env_or_id.split != split:
            raise ValueError(f"the task holds split {env_or_id.split!r}, not {split!r}; pass an env id or env instead")
        return env_or_id, None, False
    if isinstance(env_or_id, str):
        env = make_env(env_or_id, split or "test", env_kwargs)
        return env.unwrapped.task, env, True
    inner = unwrap_env(env_or_id)
    if inner is None:
        raise TypeError(f"expected a Re2LLM env id, env, DummyVecEnv or Re2LLMTask, got {type(env_or_id).__name__}")
    if env_kwargs:
        raise ValueError("env_kwargs are only used with an env id; the given env already has its kwargs")
    if split is None or inner.task.split == split:
        return inner.task, inner, False
    if inner.spec is None:
        raise ValueError(f"the env is on split {inner.task.split!r} and was not made by gym.make, so no "
                         f"{split!r} sibling can be made; pass an env id with env_kwargs instead")
    kwargs = {k: v for k, v in inner.spec.kwargs.items() if k not in ("split", "render_mode")}
    env = gym.make(inner.spec.id, split=split, **kwargs)
    return env.unwrapped.task, env, True
