"""Training and scoring for several hints per prompt: the composition env and the team of retrievers.

Both train through :func:`rec_gym.agents.training.train`, so their run folders hold what a one-hint
run's does and ``rec-gym evaluate`` scores them. This module holds what differs:

- :func:`hint_set_vec_env` builds the training envs: ``n_envs`` copies of a ``Re2LLMCompose-*-v0``
  id (sb3-contrib's ``MaskablePPO`` reads their
  :meth:`~rec_gym.envs.compose.Re2LLMComposeEnv.action_masks`; plain ``PPO`` works too), or of
  :mod:`rec_gym.envs.hint_team_v0` for one PPO policy shared by every agent, through SuperSuit's
  PettingZoo-to-vector-env conversion (``pettingzoo_env_to_vec_env_v1``, each copy built by its own
  call, concatenated for SB3). The agents see the same session, so each observation carries a one-hot
  agent indicator (``supersuit.agent_indicator_v0``); without it a shared deterministic policy would
  make every agent choose the same hint.
- :func:`compose_ranks` and :func:`team_ranks` play a trained policy deterministically on chosen
  sessions of a split and return the rank of the true item with the hint set it built;
  :func:`evaluate_hint_sets` turns them into the metrics :func:`rec_gym.agents.evaluate` reports;
  :func:`set_ranks` gives every session's rank under every hint set of at most ``max_hints`` hints,
  from which the best fixed set (chosen on train) and the per-session oracle set are read.

:func:`train_compose` and :func:`train_team` return the trained model alone. Every run reports in its
``config.json`` (``val.llm_calls``) the (session, hint set) entries its train and val feedback tables
gained: the distinct LLM calls it cost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rec_gym.feedback.table import UNKNOWN, set_columns

COMPOSE_ALGOS = ("maskable_ppo", "ppo")
TEAM_ENV = "hint_team_v0"
# Arguments of the composition and team envs that the one-hint env of the same sessions does not take.
HINT_SET_KWARGS = ("max_hints", "reward_shaping", "n_agents", "reward_mode")


def is_hint_set_env(env_id: str) -> bool:
    """Whether ``env_id`` is a composition id or the team (several hints per prompt)."""
    from rec_gym.envs import COMPOSE_ENV_IDS

    return env_id == TEAM_ENV or env_id in COMPOSE_ENV_IDS


def one_hint_counterpart(env_id: str, env_kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one-hint id and kwargs over the same sessions, knowledge base and feedback table as a hint-set env.

    A composition id maps to its ``Re2LLM-*`` id; the team, whose defaults are the synthetic world's,
    to ``Re2LLM-Synthetic-v0`` (its ``dataset`` kwarg, if any, carries over).
    """
    one_hint = "Re2LLM-Synthetic-v0" if env_id == TEAM_ENV else env_id.replace("Re2LLMCompose-", "Re2LLM-")
    return one_hint, {key: value for key, value in env_kwargs.items() if key not in HINT_SET_KWARGS}


def train_compose(env_id: str, algo: str = "maskable_ppo", env_kwargs: dict[str, Any] | None = None, seed: int = 0,
                  timesteps: int | None = None, hyperparams: dict[str, Any] | None = None,
                  progress_bar: bool = False) -> Any:
    """A ``MaskablePPO`` or ``PPO`` model trained on the train split of the composition env ``env_id``.

    Hyperparameters default to the ``algo``'s zoo-format file, keyed by ``env_id``. The model's
    observations are the env's own (no normalisation), so :func:`compose_ranks` can play it directly.
    """
    from rec_gym.agents.training import train

    if env_id == TEAM_ENV or not is_hint_set_env(env_id):
        raise ValueError(f"env_id={env_id!r} is not a composition id (Re2LLMCompose-*-v0)")
    return train(algo, env_id, env_kwargs, seed=seed, timesteps=timesteps, hyperparams=hyperparams,
                 progress_bar=progress_bar, tensorboard=False).model


def train_team(env_kwargs: dict[str, Any] | None = None, seed: int = 0, timesteps: int | None = None,
               hyperparams: dict[str, Any] | None = None, progress_bar: bool = False) -> Any:
    """One PPO policy shared by every agent of ``hint_team_v0`` (parameter sharing), trained on train.

    Hyperparameters default to ``ppo.yml``'s ``hint_team_v0`` entry; ``n_envs`` copies of the team
    env run side by side, each contributing one vector slot per agent.
    """
    from rec_gym.agents.training import train

    return train("ppo", TEAM_ENV, env_kwargs, seed=seed, timesteps=timesteps, hyperparams=hyperparams,
                 progress_bar=progress_bar, tensorboard=False).model


def make_hint_set_env(env_id: str, split: str, env_kwargs: dict[str, Any] | None = None) -> Any:
    """The env a policy of ``env_id`` plays: ``gym.make`` of a composition id, or the team with its agent indicator."""
    from rec_gym.agents.tasks import make_env

    return make_team_env(split, env_kwargs) if env_id == TEAM_ENV else make_env(env_id, split, env_kwargs)


def hint_set_vec_env(env_id: str, env_kwargs: dict[str, Any], n_envs: int, seed: int) -> Any:
    """SB3's vector env of ``n_envs`` train-split copies of a composition id or of the team (see the module docstring)."""
    if env_id != TEAM_ENV:
        from stable_baselines3.common.env_util import make_vec_env

        from rec_gym.agents.tasks import make_env

        return make_vec_env(lambda: make_env(env_id, "train", env_kwargs), n_envs=n_envs, seed=seed)
    import supersuit
    from stable_baselines3.common.vec_env import VecMonitor
    from supersuit.vector import MakeCPUAsyncConstructor

    def one_team():  # each copy is built anew (SuperSuit's concat_vec_envs_v1 would copy one by pickling it)
        return supersuit.pettingzoo_env_to_vec_env_v1(make_team_env("train", env_kwargs))

    first = one_team()
    return VecMonitor(_seeded_vec_env(MakeCPUAsyncConstructor(0)([lambda: first] + [one_team] * (n_envs - 1),
                                                                 first.observation_space, first.action_space)))


def make_team_env(split: str, env_kwargs: dict[str, Any] | None = None, indicator: bool = True):
    """``hint_team_v0.parallel_env(split=split, **env_kwargs)``, with the agent indicator when ``indicator``."""
    from rec_gym.envs import hint_team_v0

    kwargs = dict(env_kwargs or {})
    if "split" in kwargs:
        raise ValueError(f"env_kwargs sets split={kwargs['split']!r}; pass the split as its own argument instead")
    env = hint_team_v0.parallel_env(split=split, **kwargs)
    if indicator:
        import supersuit

        env = supersuit.agent_indicator_v0(env, type_only=False)
    return env


def _seeded_vec_env(venv: Any) -> Any:
    """``venv`` (SuperSuit's concatenated team copies) behind SB3's VecEnv API, ``seed()`` included."""
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    class SeededTeamVecEnv(SB3VecEnvWrapper):
        """SuperSuit's SB3 wrapper with SB3's ``seed()``: the seed is applied at the next reset (copy ``k`` gets ``seed + k``)."""

        _next_seed = None

        def seed(self, seed: int | None = None) -> list[None]:
            self._next_seed = seed
            return [None] * self.num_envs

        def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> np.ndarray:
            seed, self._next_seed = (seed if seed is not None else self._next_seed), None
            observations, self.reset_infos = self.venv.reset(seed=seed, options=options)
            return observations

    return SeededTeamVecEnv(venv)


def _chosen_hints(info: dict[str, Any]) -> np.ndarray:
    """The actions (1..K) of the hint set in a step's ``info["hints"]``, whether or not it is padded with -1."""
    hints = np.asarray(info["hints"], dtype=np.int64).reshape(-1)
    return hints[hints > 0]


def _play_compose(model: Any, env: Any, sessions: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    inner = env.unwrapped
    masked = type(model).__name__ == "MaskablePPO"
    ranks, sets = np.zeros(len(sessions), np.int64), []
    for j, i in enumerate(sessions):
        obs, info = env.reset(options={"session_index": int(i)})
        terminated = False
        while not terminated:
            kwargs = {"action_masks": inner.action_masks()} if masked else {}
            action, _ = model.predict(obs, deterministic=True, **kwargs)
            obs, _, terminated, _, info = env.step(int(action))
        ranks[j] = info["rank"]
        sets.append(_chosen_hints(info))
    return ranks, sets


def _play_team(model: Any, env: Any, sessions: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    ranks, sets = np.zeros(len(sessions), np.int64), []
    for j, i in enumerate(sessions):
        observations, _ = env.reset(options={"session_index": int(i)})
        agents = list(observations)
        actions, _ = model.predict(np.stack([observations[a] for a in agents]), deterministic=True)
        _, _, _, _, infos = env.step({a: int(x) for a, x in zip(agents, actions)})
        ranks[j] = infos[agents[0]]["rank"]
        sets.append(_chosen_hints(infos[agents[0]]))
    return ranks, sets


def compose_ranks(model: Any, env: Any, sessions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(ranks, n_hints)`` of ``model`` playing each of ``sessions`` of the composition env ``env``.

    Deterministic; a ``MaskablePPO`` model gets the env's action mask at every step. Ranks are the
    1-based rank of the true item with the final hint set (0: not in the LLM's list).
    """
    ranks, sets = _play_compose(model, env, sessions)
    return ranks, np.array([len(hints) for hints in sets], dtype=np.int64)


def team_ranks(model: Any, env: Any, sessions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(ranks, n_hints)`` of the shared policy ``model`` playing every agent of the team ``env``."""
    ranks, sets = _play_team(model, env, sessions)
    return ranks, np.array([len(hints) for hints in sets], dtype=np.int64)


def evaluate_hint_sets(model: Any, env: Any, max_sessions: int | None = None, env_id: str | None = None):
    """Score ``model`` on every session of ``env``'s split (or the first ``max_sessions``), deterministically.

    ``env`` is a composition env or the team from :func:`make_hint_set_env`. Returns the
    :class:`~rec_gym.agents.evaluation.EvaluationResult` that :func:`rec_gym.agents.evaluate` returns
    for a one-hint policy, with the same metrics over the same sessions; its ``actions`` are the
    feedback-table columns of the hint sets played (for a set of one hint, that hint's action) and
    ``extra["n_hints"]`` is ``(n,)`` the size of each set. ``mean_reward`` is the set's gain in the
    task's reward mode (the composition env's final reward; the team's reward).
    """
    from rec_gym.agents.evaluation import EvaluationResult
    from rec_gym.metrics import ranking_report

    inner = env.unwrapped
    task = inner.task
    n = task.n_sessions if max_sessions is None else min(int(max_sessions), task.n_sessions)
    if n < 1:
        raise ValueError(f"split {task.split!r} has no sessions to evaluate")
    sessions = np.arange(n)
    ranks, sets = (_play_team if type(inner).__name__ == "HintTeamParallelEnv" else _play_compose)(model, env, sessions)
    columns = np.array([task.table.column([task.kb[a - 1] for a in hints]) for hints in sets], dtype=np.int64)
    no_hint = task.action_columns[0]
    task.ensure(sessions, [no_hint])
    baseline = np.asarray(task.rank(sessions, np.full(n, no_hint)), dtype=np.int64)
    sizes = np.array([len(hints) for hints in sets], dtype=np.int64)
    rewards = np.asarray(task.reward(ranks, baseline, sizes), dtype=np.float64)
    gain = task.ndcg_of_rank[ranks] - task.ndcg_of_rank[baseline]
    metrics = ranking_report(ranks)
    metrics.update(mean_reward=float(rewards.mean()), beats_no_hint=float(np.mean(gain > 0)),
                   hurts_no_hint=float(np.mean(gain < 0)))
    return EvaluationResult(task.split, metrics, columns, ranks, baseline, rewards, env_id, {"n_hints": sizes})


def set_ranks(task: Any, max_hints: int, sessions: Sequence[int], progress: bool = False
              ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Ranks ``(len(sessions), n_sets)`` of the true item under every hint set of at most ``max_hints`` hints.

    Column 0 is the empty set (no hint); the sets are ``set_columns(task.kb, max_hints)``. Missing
    entries are filled by the task's backend (``len(sessions) * n_sets`` prompts at most).
    """
    columns = set_columns(task.kb, max_hints)
    cols = np.asarray(task.table.add_columns(columns), dtype=np.int64)
    rows = np.asarray(sessions, dtype=np.int64)
    missing = task.table.ranks[np.ix_(rows, cols)] == UNKNOWN
    if missing.any():
        task.table.fill(task.dataset, task.backend, rows[missing.any(axis=1)], cols[missing.any(axis=0)],
                        progress=progress, autosave_every=4096 if task.table.path else 0)
    return np.asarray(task.rank(rows[:, None], cols[None, :]), dtype=np.int64), columns


def known_entries(path: str | os.PathLike) -> int:
    """The number of answered (session, hint set) entries in the feedback table at ``path``: distinct LLM calls."""
    from rec_gym.feedback.table import FeedbackTable

    return FeedbackTable.load(Path(path)).n_known if Path(path).exists() else 0
