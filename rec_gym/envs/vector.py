"""A native vector version of the Re2LLM environment: a batch of sessions stepped as arrays."""

from __future__ import annotations

import reprlib
from enum import Enum
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from rec_gym.envs.arguments import check_int, check_reset_options, check_session_index
from rec_gym.envs.re2llm import NOT_STEPPED
from rec_gym.envs.task import RESET_OPTIONS as SINGLE_RESET_OPTIONS, Re2LLMTask
from rec_gym.feedback.table import NO_RANKING, UNKNOWN

try:
    from gymnasium.vector import AutoresetMode
except ImportError:  # gymnasium 1.0 autoresets on the next step only and has no enum naming the modes
    class AutoresetMode(Enum):  # type: ignore[no-redef]
        NEXT_STEP = "NextStep"
        SAME_STEP = "SameStep"
        DISABLED = "Disabled"

# Sessions of one-step episodes are drawn in blocks of this size, exactly as Re2LLMEnv.reset draws them.
DRAW_BLOCK = 1024
RESET_OPTIONS = (*SINGLE_RESET_OPTIONS, "reset_mask")  # Gymnasium's vector envs take reset_mask


def as_autoreset_mode(mode: "AutoresetMode | str") -> AutoresetMode:
    """The :class:`AutoresetMode` of ``mode``: the enum, its value (``"NextStep"``) or its name (``"next_step"``)."""
    if isinstance(mode, AutoresetMode):
        return mode
    for member in AutoresetMode:
        if str(mode) == member.value or str(mode).upper() == member.name:
            return member
    raise ValueError(f"autoreset_mode={mode!r} is not one of "
                     f"{[m.value for m in AutoresetMode]} (or gymnasium.vector.AutoresetMode)")


class Re2LLMVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~rec_gym.envs.re2llm.Re2LLMEnv` stepped with NumPy.

    Built by ``gym.make_vec(id, num_envs=n, vectorization_mode="vector_entry_point")`` and taking the
    single environment's keyword arguments (``render_mode`` aside) plus ``autoreset_mode``. Every
    ``reset`` and ``step`` returns what ``gymnasium.vector.SyncVectorEnv`` over ``n`` single envs
    returns in the same autoreset mode, given the same seeds and actions: sub-env ``i`` draws its
    sessions from its own generator, seeded ``seed + i`` by ``reset(seed=seed)`` (or ``seed[i]`` for a
    list), and the infos are Gymnasium's batched dicts, a typed array per key of
    :class:`~rec_gym.envs.re2llm.Re2LLMEnv`'s info (int64, float64 or bool) beside its ``_key``
    boolean mask of the sub-envs that reported it. Reset and step infos have the same keys.

    Autoreset (``autoreset_mode``, a ``gymnasium.vector.AutoresetMode`` or its value):

    - ``"NextStep"`` (default): the step after a sub-env's episode ended resets it, whatever its
      action: reward 0, not terminated, the new episode's first observation, and the reset's info.
    - ``"SameStep"``: a finished sub-env is reset within the step; ``infos["final_obs"]`` (object array
      of its last observation) and ``infos["final_info"]`` (its step info, batched) are valid where
      ``infos["_final_obs"]`` and ``infos["_final_info"]``, and the top-level keys hold the new
      episode's reset info for it.
    - ``"Disabled"``: a finished sub-env must be reset by ``reset(options={"reset_mask": mask})``
      before it steps again.

    ``reset`` options: ``reset_mask`` (bool array ``(num_envs,)``: reset only those sub-envs; taken out
    of the caller's ``options`` dict, as ``SyncVectorEnv`` does, so that wrappers such as
    ``RecordEpisodeStatistics`` see what they see over ``SyncVectorEnv``) and ``session_index`` (an int for every sub-env, as the single env takes it, or one per sub-env).
    ``infos["session_index"]`` always holds the session whose observation is returned (or, for a
    finished sub-env under next-step or disabled autoreset, the one it ended on). Unknown feedback
    entries are filled by the backend before the step returns, so with a filled table a step is a
    few array lookups.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, sessions_per_episode: int = 1,
                 autoreset_mode: "AutoresetMode | str" = AutoresetMode.NEXT_STEP, render_mode: str | None = None,
                 **task_kwargs: Any) -> None:
        if render_mode is not None:
            raise ValueError("Re2LLMVectorEnv does not render; use Re2LLMEnv(render_mode='ansi') to look at a session")
        n = check_int("num_envs", num_envs, minimum=1)
        self.sessions_per_episode = check_int("sessions_per_episode", sessions_per_episode, minimum=1)
        self.autoreset_mode = as_autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        self.task = Re2LLMTask(**task_kwargs)
        self.num_envs = n
        self.single_observation_space = self.task.observation_space
        self.single_action_space = spaces.Discrete(self.task.n_actions)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self._generators: list[np.random.Generator | None] = [None] * n
        self._seeds: list[int | None] = [None] * n
        # Column k is sub-env k's block, so sub-envs drawing in step read one contiguous row.
        self._draws = np.zeros((DRAW_BLOCK, n), dtype=np.int64)
        self._drawn = np.full(n, DRAW_BLOCK, dtype=np.int64)
        self._order = np.zeros((n, self.sessions_per_episode), dtype=np.int64)
        self._t = np.zeros(n, dtype=np.int64)
        self._episode_obs: np.ndarray | None = None
        self._ended = np.zeros(n, dtype=bool)  # episode over, not yet reset
        self._started = False
        self._all = np.arange(n)
        self._complete = self._one_hint_columns_filled()

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """The sub-envs' generators (as ``SyncVectorEnv.np_random`` gives them)."""
        return tuple(self._generator(k) for k in range(self.num_envs))

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:
        self.np_random  # creates the generators not seeded yet, as the single env's property does
        return tuple(self._seeds)

    def _generator(self, k: int) -> np.random.Generator:
        if self._generators[k] is None:
            self._generators[k], self._seeds[k] = seeding.np_random()
        return self._generators[k]

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        n = self.num_envs
        if seed is None:
            seeds: Sequence[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + k for k in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"reset(seed=[...]) needs one seed per sub-env: num_envs={n}, got {len(seeds)}")
        options = check_reset_options(options, RESET_OPTIONS)
        envs = self._all if "reset_mask" not in options else np.flatnonzero(self._reset_mask(options.pop("reset_mask")))
        for k in envs.tolist():
            if seeds[k] is not None:
                self._generators[k], self._seeds[k] = seeding.np_random(seeds[k])
                self._drawn[k] = DRAW_BLOCK
        self._begin_episodes(envs, self._start_sessions(options.get("session_index"), envs))
        self._ended[envs] = False
        self._started = True
        infos: dict[str, Any] = {}
        self._add_batch(infos, self._reset_info(envs), envs)
        return self._observations(), infos

    def step(self, actions):
        if not self._started:
            raise RuntimeError("step() called before reset(); call reset() first")
        a = np.asarray(actions)
        # A list's bools would become the ints 0 and 1 in the array: a bool is not an action.
        if (a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer)
                or (not isinstance(actions, np.ndarray) and any(isinstance(x, (bool, np.bool_)) for x in actions))):
            raise ValueError(f"actions must be an integer array of shape ({self.num_envs},) (one int per sub-env), "
                             f"got {reprlib.repr(actions)} ({a.dtype}, shape {a.shape})")
        if a.min() < 0 or a.max() >= self.task.n_actions:
            raise ValueError(f"actions must lie in 0..{self.task.n_actions - 1} (0 = no hint); got {a.min()}..{a.max()}")
        mode = self.autoreset_mode
        if mode == AutoresetMode.DISABLED and self._ended.any():
            raise RuntimeError(f"sub-envs {np.flatnonzero(self._ended).tolist()} ended their episode and "
                               f"autoreset_mode is Disabled; call reset(options={{'reset_mask': mask}}) for them first")
        restarting = self._ended if mode == AutoresetMode.NEXT_STEP else np.zeros(self.num_envs, dtype=bool)
        stepping = ~restarting
        rewards, info = self._step_sessions(a, stepping)
        terminated = stepping & (self._t >= self.sessions_per_episode)
        infos: dict[str, Any] = {}
        stepped = np.flatnonzero(stepping)
        if mode == AutoresetMode.SAME_STEP and terminated.any():
            done = np.flatnonzero(terminated)
            final_obs = np.full(self.num_envs, None, dtype=object)
            last = self.task.observations[self._order[done, -1]]
            final_obs[done] = np.fromiter(last, dtype=object, count=len(done))  # one array per sub-env
            infos["final_obs"], infos["_final_obs"] = final_obs, terminated.copy()
            infos["final_info"] = {}
            self._add_batch(infos["final_info"], info, done)
            infos["_final_info"] = terminated.copy()
            self._begin_episodes(done, None)
            stepped = np.flatnonzero(~terminated)
            self._add_batch(infos, self._reset_info(done), done)
        elif restarting.any():
            restart = np.flatnonzero(restarting)
            self._begin_episodes(restart, None)
            self._add_batch(infos, self._reset_info(restart), restart)
        self._add_batch(infos, info, stepped)
        self._ended = terminated if mode != AutoresetMode.SAME_STEP else np.zeros(self.num_envs, dtype=bool)
        return self._observations(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), infos

    def _observations(self) -> np.ndarray:
        """Each sub-env's observation: of its current session, or of its last one once its episode ended."""
        if self.sessions_per_episode == 1:
            # A one-session episode ends on the observation it started with: gather again only after resets.
            if self._episode_obs is None:
                self._episode_obs = self.task.observations[self._order[:, 0]]
            return self._episode_obs.copy()
        return self.task.observations[self._order[self._all, np.minimum(self._t, self.sessions_per_episode - 1)]]

    def _step_sessions(self, a: np.ndarray, stepping: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rewards and step infos of every sub-env (valid where ``stepping``); advances those sub-envs."""
        task, spe = self.task, self.sessions_per_episode
        if not stepping.any():
            return np.zeros(self.num_envs), {}
        i = self._order[:, 0].copy() if spe == 1 else self._order[self._all, np.minimum(self._t, spe - 1)]
        ranks = task.table.ranks
        gain = task.reward_mode == "ndcg_gain"
        free = (a == 0) if gain else np.zeros(len(a), dtype=bool)
        rank, baseline = ranks[i, a].astype(np.int64), ranks[i, 0].astype(np.int64)
        if not self._complete:
            missing = stepping & ~free & ((rank == UNKNOWN) | (gain & (baseline == UNKNOWN)))
            for row in np.unique(i[missing]).tolist():
                needed = np.unique(a[missing & (i == row)])
                task.ensure(row, np.concatenate(([0], needed)) if gain else needed)
            self._complete = self._one_hint_columns_filled()
            ranks = task.table.ranks  # a new array when the fill took in columns another process added
            rank, baseline = ranks[i, a].astype(np.int64), ranks[i, 0].astype(np.int64)
        # The single env's rule: a rank the reward did not need is reported as UNKNOWN.
        rank[free] = UNKNOWN
        baseline[free | (not gain and a != 0)] = UNKNOWN
        no_ranking = rank == NO_RANKING
        rank[no_ranking] = 0
        baseline[baseline == NO_RANKING] = 0
        known = ~free
        ndcg = np.where(known, task.ndcg_of_rank[rank], 0.0)
        hit = np.where(known, task.hit_of_rank[rank], 0.0)
        rewards = np.where(stepping, np.asarray(task.reward(np.maximum(rank, 0), np.maximum(baseline, 0), a),
                                                dtype=np.float64), 0.0)
        self._t[stepping] += 1
        info = {"session_index": i, "rank": rank, "baseline_rank": baseline, "rank_known": known,
                "ndcg": ndcg, "hit": hit, "no_ranking": no_ranking}
        return rewards, info

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (self.num_envs,)):
            shape = getattr(mask, "shape", None)
            raise ValueError(f"options['reset_mask'] must be a bool NumPy array of shape ({self.num_envs},), got "
                             f"{type(mask).__name__} {getattr(mask, 'dtype', '')} {shape}")
        if not mask.any():
            raise ValueError("options['reset_mask'] selects no sub-env; set True for the sub-envs to reset")
        return mask

    def _start_sessions(self, start: Any, envs: np.ndarray) -> np.ndarray | None:
        """int64 ``(len(envs),)``: the sessions ``options["session_index"]`` starts ``envs`` at (``None``: draw them).

        ``start`` is one int for every sub-env or ``num_envs`` of them (a list, a tuple or an integer
        array), each an int or NumPy integer as the single env takes it; only those of ``envs`` must be
        in range.
        """
        if start is None:
            return None
        n, split = self.task.n_sessions, self.task.split
        if isinstance(start, np.ndarray) and start.ndim == 1 and np.issubdtype(start.dtype, np.integer):
            starts = start
        elif isinstance(start, (list, tuple)) or (isinstance(start, np.ndarray) and start.ndim >= 1):
            # One by one, so that [1, True] or [1, 2.0] is refused rather than coerced by NumPy.
            starts = np.array([check_int("options['session_index']", s) for s in start], dtype=np.int64)
        else:
            starts = np.full(self.num_envs, check_session_index(start, n, split), dtype=np.int64)
        if starts.shape != (self.num_envs,):
            raise ValueError(f"options['session_index'] must be an int or {self.num_envs} ints (one per sub-env), "
                             f"got {start!r}")
        chosen = starts[envs].astype(np.int64)
        for index in chosen[(chosen < 0) | (chosen >= n)][:1].tolist():
            check_session_index(index, n, split)  # raises, naming the first one out of range
        return chosen

    def _one_hint_columns_filled(self) -> bool:
        """Every (session, action) entry of this split is known, so ``step`` need not look for unknown ones.

        Only the one-hint columns count: the composition and team envs add hint-set columns to the same
        table file, which this env never reads and which may stay unfilled.
        """
        return self.task.n_missing() == 0

    def _begin_episodes(self, envs: np.ndarray, starts: np.ndarray | None) -> None:
        """New episodes for ``envs``: from ``starts`` in split order, else drawn as Re2LLMEnv.reset draws them."""
        spe, n = self.sessions_per_episode, self.task.n_sessions
        if starts is not None:
            self._order[envs] = (starts[:, None] + np.arange(spe)) % n
        elif spe == 1:
            for k in envs[self._drawn[envs] == DRAW_BLOCK].tolist():
                self._draws[:, k] = self._generator(k).integers(n, size=DRAW_BLOCK)
                self._drawn[k] = 0
            self._order[envs, 0] = self._draws[self._drawn[envs], envs]
            self._drawn[envs] += 1
        else:
            for k in envs.tolist():
                self._order[k] = self._generator(k).choice(n, size=spe, replace=spe > n)
        self._t[envs] = 0
        self._episode_obs = None

    def _reset_info(self, envs: np.ndarray) -> dict[str, np.ndarray]:
        sessions = np.zeros(self.num_envs, dtype=np.int64)
        sessions[envs] = self._order[envs, 0]
        # np.full with the Python value's type gives the dtype SyncVectorEnv batches it into.
        return {"session_index": sessions,
                **{key: np.full(self.num_envs, value, dtype=type(value)) for key, value in NOT_STEPPED.items()}}

    def _add_batch(self, infos: dict[str, Any], info: dict[str, np.ndarray], envs: np.ndarray) -> None:
        """Set ``info``'s values of ``envs`` into ``infos`` with ``_key`` masks, as ``VectorEnv._add_info`` does.

        Entries of other sub-envs keep what ``infos`` held, else 0.
        """
        if len(envs) == 0:
            return
        whole = len(envs) == self.num_envs
        for key, values in info.items():
            if key in infos:
                array, mask = infos[key], infos[f"_{key}"]
            elif whole:
                infos[key], infos[f"_{key}"] = values, np.ones(self.num_envs, dtype=bool)
                continue
            else:
                array = np.zeros(self.num_envs, dtype=values.dtype)
                mask = np.zeros(self.num_envs, dtype=bool)
            array[envs] = values[envs]
            mask[envs] = True
            infos[key], infos[f"_{key}"] = array, mask

    def close_extras(self, **kwargs: Any) -> None:
        if hasattr(self, "task"):  # construction may have failed before the task existed
            self.task.close()
