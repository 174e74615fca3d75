"""Reference retrieval policies: no hint, a random hint, the best fixed hint, LinUCB, and the oracle.

All of them follow :class:`~rec_gym.agents.policy.Policy` (SB3's ``predict``) and accept one
observation ``(d,)`` or a batch ``(n, d)``. :class:`BestFixedHint` and :class:`LinUCB` are fitted on
the train split; :class:`Oracle` reads the feedback table of the session being evaluated and is an
upper bound, not a policy an agent could run.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from rec_gym.agents.tasks import resolve_task, unwrap_env
from rec_gym.envs.task import Re2LLMTask


def _batch(observation: np.ndarray) -> tuple[np.ndarray, bool]:
    obs = np.asarray(observation, dtype=np.float64)
    if obs.ndim not in (1, 2):
        raise ValueError(f"observation must be (d,) or (n, d), got shape {obs.shape}")
    return np.atleast_2d(obs), obs.ndim == 1


def _output(actions: np.ndarray, single: bool) -> np.ndarray | int:
    actions = np.asarray(actions, dtype=np.int64)
    return int(actions[0]) if single else actions


class NoHint:
    """Always action 0: the frozen LLM's own ranking, the floor every policy is compared with."""

    name = "no hint"

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray | int, Any]:
        obs, single = _batch(observation)
        return _output(np.zeros(len(obs)), single), state


class FixedHint:
    """Always the same action ``action`` (0 = no hint, ``k`` = hint ``k``)."""

    def __init__(self, action: int) -> None:
        if int(action) < 0:
            raise ValueError(f"action must be >= 0 (0 = no hint), got {action}")
        self.action = int(action)
        self.name = f"fixed hint {self.action}"

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray | int, Any]:
        obs, single = _batch(observation)
        return _output(np.full(len(obs), self.action), single), state


class UniformRandomHint:
    """A hint drawn uniformly from the ``K`` hints of the knowledge base (never "no hint"), seeded.

    Args:
        n_actions: ``K + 1``, or the env's ``Discrete`` action space.
        seed: seed of the draws; ``deterministic=True`` does not make this policy deterministic, the seed does.
    """

    name = "random hint"

    def __init__(self, n_actions: "int | gym.spaces.Discrete", seed: int = 0) -> None:
        n = int(n_actions.n) if isinstance(n_actions, gym.spaces.Discrete) else int(n_actions)
        if n < 2:
            raise ValueError(f"n_actions must be >= 2 (no hint plus at least one hint), got {n}")
        self.n_actions = n
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray | int, Any]:
        obs, single = _batch(observation)
        return _output(self.rng.integers(1, self.n_actions, size=len(obs)), single), state


def action_ranks(task: Re2LLMTask, sessions: np.ndarray) -> np.ndarray:
    """int ``(n, K + 1)``: the target's rank under every action on each of the split's ``sessions`` (fills them).

    Reads the task's actions and nothing else: the table file may also hold the hint-set columns of the
    composition and team envs (:attr:`~rec_gym.envs.task.Re2LLMTask.action_columns`).
    """
    sessions = np.atleast_1d(np.asarray(sessions, dtype=np.int64))
    actions = np.arange(task.n_actions)
    task.ensure(sessions, actions)
    return task.rank(sessions[:, None], actions[None, :])


def mean_rewards(task: Re2LLMTask) -> np.ndarray:
    """float64 ``(K + 1,)``: the mean reward of every action over all sessions of ``task`` (fills the table)."""
    ranks = action_ranks(task, np.arange(task.n_sessions))
    actions = np.broadcast_to(np.arange(task.n_actions), ranks.shape)
    return np.asarray(task.reward(ranks, ranks[:, :1], actions), dtype=np.float64).mean(axis=0)


class BestFixedHint(FixedHint):
    """The single action with the highest mean reward on the train split, found from the feedback table.

    >>> policy = BestFixedHint.fit("Re2LLM-Synthetic-v0")          # doctest: +SKIP
    >>> policy.action, policy.train_mean_rewards.shape            # doctest: +SKIP
    (7, (21,))
    """

    name = "best fixed hint"

    def __init__(self, action: int, train_mean_rewards: np.ndarray | None = None) -> None:
        super().__init__(action)
        self.name = BestFixedHint.name
        self.train_mean_rewards = train_mean_rewards

    @classmethod
    def fit(cls, env_or_id: Any, env_kwargs: dict[str, Any] | None = None, split: str = "train") -> "BestFixedHint":
        """Choose the action of highest mean reward on ``split`` (ties: the lowest action, so no hint first)."""
        task, env, created = resolve_task(env_or_id, split, env_kwargs)
        try:
            means = mean_rewards(task)
        finally:
            if created:
                env.close()
        return cls(int(np.argmax(means)), means)


class LinUCB:
    """Disjoint LinUCB (Li et al., 2010): one ridge regression of reward on the observation per action.

    Each action ``a`` keeps ``A_a = ridge * I + sum x x^T`` and ``b_a = sum r x`` over the steps it was
    played, with ``x`` the observation plus a constant 1. Acting online scores
    ``theta_a . x + alpha * sqrt(x^T A_a^-1 x)`` with ``theta_a = A_a^-1 b_a``; ``predict(...,
    deterministic=True)`` (what evaluation uses) drops the exploration bonus and plays the greedy
    action. Ties break at random with the policy's seed.

    Args:
        n_actions: ``K + 1``, or the env's ``Discrete`` action space.
        dim: observation size ``d``.
        alpha: width of the exploration bonus.
        ridge: prior precision of every ``theta_a``.
        seed: seed of tie-breaking and of the training env's resets.
    """

    name = "LinUCB"

    def __init__(self, n_actions: "int | gym.spaces.Discrete", dim: int, alpha: float = 0.5, ridge: float = 1.0,
                 seed: int = 0) -> None:
        self.n_actions = int(n_actions.n) if isinstance(n_actions, gym.spaces.Discrete) else int(n_actions)
        self.dim = int(dim) + 1
        self.alpha, self.ridge, self.seed = float(alpha), float(ridge), int(seed)
        self.rng = np.random.default_rng(seed)
        self.A_inv = np.repeat(np.eye(self.dim)[None] / self.ridge, self.n_actions, axis=0)
        self.b = np.zeros((self.n_actions, self.dim))
        self.theta = np.zeros((self.n_actions, self.dim))
        self.counts = np.zeros(self.n_actions, dtype=np.int64)

    @classmethod
    def for_env(cls, env: Any, **kwargs: Any) -> "LinUCB":
        """A LinUCB sized for ``env``'s action and observation spaces."""
        inner = unwrap_env(env) or env
        return cls(inner.action_space, int(np.prod(inner.observation_space.shape)), **kwargs)

    def _features(self, observation: np.ndarray) -> tuple[np.ndarray, bool]:
        obs, single = _batch(observation)
        if obs.shape[1] != self.dim - 1:
            raise ValueError(f"observation has {obs.shape[1]} features, this LinUCB was built for {self.dim - 1}")
        return np.hstack([obs, np.ones((len(obs), 1))]), single

    def scores(self, observation: np.ndarray, explore: bool) -> np.ndarray:
        """float64 ``(n, K + 1)``: estimated reward of every action, plus the UCB bonus when ``explore``."""
        x, _ = self._features(observation)
        value = x @ self.theta.T
        if explore and self.alpha > 0:
            # x^T A_a^-1 x for every observation and action: one batched matrix product (BLAS).
            width = (np.matmul(x[None], self.A_inv) * x[None]).sum(axis=-1).T
            value = value + self.alpha * np.sqrt(np.maximum(width, 0.0))
        return value

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray | int, Any]:
        obs, single = _batch(observation)
        value = self.scores(obs, explore=not deterministic)
        # Tiny random jitter breaks exact ties (e.g. before any update) without changing any real order.
        value = value + self.rng.uniform(0, 1e-12, size=value.shape)
        return _output(np.argmax(value, axis=1), single), state

    def update(self, observation: np.ndarray, action: int, reward: float) -> None:
        """Add one ``(observation, action, reward)`` to action ``action``'s regression (Sherman-Morrison)."""
        x, _ = self._features(observation)
        x = x[0]
        a = int(action)
        A_inv_x = self.A_inv[a] @ x
        self.A_inv[a] -= np.outer(A_inv_x, A_inv_x) / (1.0 + x @ A_inv_x)
        self.b[a] += float(reward) * x
        self.theta[a] = self.A_inv[a] @ self.b[a]
        self.counts[a] += 1

    def fit(self, env: Any, n_steps: int | None = None, progress: bool = False) -> "LinUCB":
        """Learn online on ``env`` (its split should be ``"train"``) for ``n_steps`` steps (default: 2 passes).

        Each step plays the UCB action on the session the env presents and updates with the
        reward the env returns, exactly as a bandit would in deployment.
        """
        if isinstance(env, str):
            raise TypeError("LinUCB.fit needs an env instance, e.g. gym.make(env_id, split='train')")
        inner = unwrap_env(env)
        if inner is not None and inner.task.split != "train":
            raise ValueError(f"LinUCB.fit got an env on split {inner.task.split!r}; fit on split='train'")
        n_steps = 2 * inner.task.n_sessions if n_steps is None and inner is not None else int(n_steps or 0)
        obs, _ = env.reset(seed=self.seed)
        for _ in tqdm(range(n_steps), desc="LinUCB", disable=not progress, dynamic_ncols=True):
            action, _ = self.predict(obs, deterministic=False)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            self.update(obs, action, reward)
            obs = env.reset()[0] if terminated or truncated else next_obs
        return self


class Oracle:
    """The best action of each session, read from the feedback table: an upper bound, not a policy.

    For every session it plays the action whose hint gives the highest NDCG@10 of the true item
    (ties: the lowest action, so no hint when nothing helps), which needs the answer for every hint
    and therefore the true item. It reports how much any hint-retrieval policy could gain with this
    knowledge base and LLM.

    :func:`~rec_gym.agents.evaluate` hands it the sessions through :meth:`predict_sessions`; its
    :meth:`predict` works step by step on the env given to the constructor, whose
    ``env.unwrapped.current_session`` names the session being shown.
    """

    name = "oracle"

    def __init__(self, env: Any = None) -> None:
        self.env = env

    @staticmethod
    def predict_sessions(task: Re2LLMTask, sessions: Sequence[int] | np.ndarray) -> np.ndarray:
        """int64 ``(n,)``: the NDCG@10-best action of each of the split's ``sessions`` (fills their table rows)."""
        ndcg = task.ndcg_of_rank[action_ranks(task, sessions)]
        return np.argmax(ndcg, axis=1).astype(np.int64)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray | int, Any]:
        inner = unwrap_env(self.env)
        if inner is None:
            raise ValueError("Oracle.predict needs the env it acts in: Oracle(env); evaluate() needs no env")
        obs, single = _batch(observation)
        if not single:
            raise ValueError("Oracle.predict acts on the env's current session only; pass one observation")
        return int(self.predict_sessions(inner.task, [inner.current_session])[0]), state
