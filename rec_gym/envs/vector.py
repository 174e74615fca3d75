"""A native vector version of the Re2LLM environment: a batch of sessions stepped as arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rec_gym.envs.task import Re2LLMTask
from rec_gym.feedback.table import NO_RANKING, UNKNOWN


class Re2LLMVectorEnv(VectorEnv):
    """``num_envs`` independent copies of :class:`~rec_gym.envs.re2llm.Re2LLMEnv` stepped with NumPy.

    Built by ``gym.make_vec(id, num_envs=n, vectorization_mode="vector_entry_point")`` and taking the
    same keyword arguments as the single environment (``render_mode`` aside). Every copy draws its
    sessions uniformly, with replacement, from the split. Autoreset is same-step: the observation
    returned for a finished copy is the first of its next episode, and
    ``infos["final_obs"]`` (float32 ``(num_envs, d)``, valid where ``infos["_final_obs"]``) holds
    the observation it ended on. ``infos`` also carries int arrays ``rank``, ``baseline_rank`` and
    ``session_index`` of the step's sessions. Unknown feedback entries are filled by the backend
    before the step returns, so with a filled table a step is a few array lookups.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, sessions_per_episode: int = 1, render_mode: str | None = None,
                 **task_kwargs: Any) -> None:
        if render_mode is not None:
            raise ValueError("Re2LLMVectorEnv does not render; use Re2LLMEnv(render_mode='ansi') to look at a session")
        if int(num_envs) < 1 or int(sessions_per_episode) < 1:
            raise ValueError(f"num_envs and sessions_per_episode must be >= 1, got {num_envs}, {sessions_per_episode}")
        self.task = Re2LLMTask(**task_kwargs)
        self.num_envs = int(num_envs)
        self.sessions_per_episode = int(sessions_per_episode)
        dim = self.task.observations.shape[1]
        self.single_observation_space = self.task.observation_space
        self.single_action_space = spaces.Discrete(self.task.n_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._sessions = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        self._obs = np.zeros((self.num_envs, dim), dtype=np.float32)
        self._complete = self.task.table.complete

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        if isinstance(seed, list):
            seed = seed[0]
        super().reset(seed=seed)
        self._sessions = self.np_random.integers(self.task.n_sessions, size=self.num_envs)
        self._t[:] = 0
        self._obs = self.task.observations[self._sessions]
        return self._obs, {"session_index": self._sessions.copy()}

    def step(self, actions):
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array of shape ({self.num_envs},), got {a.dtype} {a.shape}")
        if a.min() < 0 or a.max() >= self.task.n_actions:
            raise ValueError(f"actions must lie in 0..{self.task.n_actions - 1} (0 = no hint); got {a.min()}..{a.max()}")
        task, i = self.task, self._sessions
        ranks = task.table.ranks
        if not self._complete:
            missing = (ranks[i, a] == UNKNOWN) | (ranks[i, 0] == UNKNOWN)
            for row in np.unique(i[missing]):
                task.ensure(row, np.unique(np.concatenate(([0], a[i == row]))))
            self._complete = task.table.complete
        rank, baseline = ranks[i, a], ranks[i, 0]
        rank = np.where(rank == NO_RANKING, 0, rank)
        baseline = np.where(baseline == NO_RANKING, 0, baseline)
        rewards = np.asarray(task.reward(rank, baseline, a), dtype=np.float64)

        self._t += 1
        terminated = self._t >= self.sessions_per_episode
        self._t[terminated] = 0
        final_obs = self._obs
        self._sessions = self.np_random.integers(task.n_sessions, size=self.num_envs)
        self._obs = task.observations[self._sessions]
        infos = {"rank": rank, "baseline_rank": baseline, "session_index": i,
                 "final_obs": final_obs, "_final_obs": terminated}
        return self._obs, rewards, terminated, np.zeros(self.num_envs, dtype=bool), infos

    def close_extras(self, **kwargs: Any) -> None:
        self.task.close()
