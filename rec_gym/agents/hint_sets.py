"""Training and scoring for several hints per prompt: the composition env and the team of retrievers.

- :func:`train_compose` trains sb3-contrib's ``MaskablePPO`` (which reads the env's
  :meth:`~rec_gym.envs.compose.Re2LLMComposeEnv.action_masks`) or plain ``PPO`` on a
  ``Re2LLMCompose-*-v0`` id.
- :func:`train_team` trains one PPO policy shared by every agent of :mod:`rec_gym.envs.hint_team_v0`,
  through SuperSuit's PettingZoo-to-vector-env conversion (``pettingzoo_env_to_vec_env_v1``,
  each of ``n_envs`` copies built by its own call, concatenated for SB3). The agents see the same session, so each
  observation carries a one-hot agent indicator (``supersuit.agent_indicator_v0``); without it a
  shared deterministic policy would make every agent choose the same hint.
- :func:`compose_ranks` and :func:`team_ranks` play a trained policy deterministically on chosen
  sessions of a split and return the rank of the true item with the hint set it built;
  :func:`set_ranks` gives every session's rank under every hint set of at most ``max_hints`` hints,
  from which the best fixed set (chosen on train) and the per-session oracle set are read.

Each function that trains takes ``feedback_table``: a path whose table ends holding exactly the
(session, hint set) entries that the run needed, so ``FeedbackTable.load(path).n_known`` is the
number of distinct LLM calls it cost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rec_gym.feedback.table import UNKNOWN, set_columns

COMPOSE_ALGOS = ("maskable_ppo", "ppo")
TEAM_ENV = "hint_team_v0"


def _algo(algo: str) -> type:
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO
    raise ValueError(f"algo={algo!r} is not one of {COMPOSE_ALGOS}")


def _hyperparams(algo: str, env_id: str, hyperparams: dict[str, Any] | None):
    from rec_gym.agents.training import Hyperparams, load_hyperparams

    return Hyperparams.parse(dict(hyperparams) if hyperparams is not None else load_hyperparams(algo, env_id))


def train_compose(env_id: str, algo: str = "maskable_ppo", env_kwargs: dict[str, Any] | None = None, seed: int = 0,
                  timesteps: int | None = None, hyperparams: dict[str, Any] | None = None,
                  progress_bar: bool = False) -> Any:
    """A ``MaskablePPO`` or ``PPO`` model trained on the train split of the composition env ``env_id``.

    Hyperparameters default to the ``algo``'s zoo-format file, keyed by ``env_id``. The model's
    observations are the env's own (no normalisation), so :func:`compose_ranks` can play it directly.
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.utils import set_random_seed

    from rec_gym.agents.tasks import make_env

    cls = _algo(algo)
    hp = _hyperparams(algo, env_id, hyperparams)
    if hp.normalize is not None:
        raise ValueError(f"normalize is not supported for {algo} on {env_id}; remove it from the hyperparameters")
    n_timesteps = int(timesteps) if timesteps else hp.n_timesteps
    if n_timesteps <= 0:
        raise ValueError(f"no timesteps: pass timesteps or set n_timesteps for {env_id!r} in the {algo} hyperparameters")
    kwargs = {**hp.env_kwargs, **(env_kwargs or {})}
    set_random_seed(seed)
    venv = make_vec_env(lambda: make_env(env_id, "train", kwargs), n_envs=hp.n_envs, seed=seed)
    model = cls(hp.policy, venv, seed=seed, device="cpu", **hp.algo_kwargs)
    model.learn(total_timesteps=n_timesteps, progress_bar=progress_bar)
    venv.close()
    return model


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


def train_team(env_kwargs: dict[str, Any] | None = None, seed: int = 0, timesteps: int | None = None,
               hyperparams: dict[str, Any] | None = None, progress_bar: bool = False) -> Any:
    """One PPO policy shared by every agent of ``hint_team_v0`` (parameter sharing), trained on train.

    Hyperparameters default to ``ppo.yml``'s ``hint_team_v0`` entry; ``n_envs`` copies of the team
    env run side by side, each contributing one vector slot per agent.
    """
    import supersuit
    from stable_baselines3 import PPO
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecMonitor
    from supersuit.vector import MakeCPUAsyncConstructor

    hp = _hyperparams("ppo", TEAM_ENV, hyperparams)
    if hp.normalize is not None:
        raise ValueError(f"normalize is not supported for the team; remove it from the {TEAM_ENV} hyperparameters")
    n_timesteps = int(timesteps) if timesteps else hp.n_timesteps
    if n_timesteps <= 0:
        raise ValueError(f"no timesteps: pass timesteps or set n_timesteps for {TEAM_ENV!r} in the ppo hyperparameters")
    set_random_seed(seed)
    kwargs = {**hp.env_kwargs, **(env_kwargs or {})}

    def one_team():  # each copy is built anew (SuperSuit's concat_vec_envs_v1 would copy one by pickling it)
        return supersuit.pettingzoo_env_to_vec_env_v1(make_team_env("train", kwargs))

    first = one_team()
    venv = VecMonitor(_seeded_vec_env(MakeCPUAsyncConstructor(0)([lambda: first] + [one_team] * (hp.n_envs - 1),
                                                                   first.observation_space, first.action_space)))
    model = PPO(hp.policy, venv, seed=seed, device="cpu", **hp.algo_kwargs)
    model.learn(total_timesteps=n_timesteps, progress_bar=progress_bar)
    venv.close()
    return model


def compose_ranks(model: Any, env: Any, sessions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(ranks, n_hints)`` of ``model`` playing each of ``sessions`` of the composition env ``env``.

    Deterministic; a ``MaskablePPO`` model gets the env's action mask at every step. Ranks are the
    1-based rank of the true item with the final hint set (0: not in the LLM's list).
    """
    inner = env.unwrapped
    masked = type(model).__name__ == "MaskablePPO"
    ranks, sizes = np.zeros(len(sessions), np.int64), np.zeros(len(sessions), np.int64)
    for j, i in enumerate(sessions):
        obs, info = env.reset(options={"session_index": int(i)})
        terminated = False
        while not terminated:
            kwargs = {"action_masks": inner.action_masks()} if masked else {}
            action, _ = model.predict(obs, deterministic=True, **kwargs)
            obs, _, terminated, _, info = env.step(int(action))
        ranks[j], sizes[j] = info["rank"], info["n_hints"]
    return ranks, sizes


def team_ranks(model: Any, env: Any, sessions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(ranks, n_hints)`` of the shared policy ``model`` playing every agent of the team ``env``."""
    ranks, sizes = np.zeros(len(sessions), np.int64), np.zeros(len(sessions), np.int64)
    for j, i in enumerate(sessions):
        observations, _ = env.reset(options={"session_index": int(i)})
        agents = list(observations)
        actions, _ = model.predict(np.stack([observations[a] for a in agents]), deterministic=True)
        _, _, _, _, infos = env.step({a: int(x) for a, x in zip(agents, actions)})
        info = infos[agents[0]]
        ranks[j], sizes[j] = info["rank"], len(info["hints"])
    return ranks, sizes


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


def _split_table(make: Any, split: str) -> "tuple[Any, Path | None]":
    env = make(split)
    task = (env.unwrapped if hasattr(env, "unwrapped") else env).task
    return env, task.table.path


def train_hint_sets(algo: str, env_id: str, env_kwargs: dict[str, Any] | None = None, seed: int = 0,
                    timesteps: int | None = None, hyperparams: dict[str, Any] | None = None,
                    out_dir: str | os.PathLike | None = None, progress_bar: bool = False) -> dict[str, Any]:
    """Train on a composition id (``algo`` ``"maskable_ppo"`` or ``"ppo"``) or on ``hint_team_v0`` (``"ppo"``).

    Scores the deterministic policy on every val session and counts the distinct LLM calls the run
    needed: the (session, hint set) entries its train and val tables gained. With ``out_dir``, saves
    ``model.zip`` (SB3) and ``config.json`` there. Returns ``val_ndcg10``, ``val_no_hint_ndcg10``,
    ``val_mean_hints`` and ``llm_calls``.
    """
    import json

    import gymnasium as gym

    from rec_gym.agents.training import load_hyperparams, make_config

    kwargs = dict(env_kwargs or {})
    team = env_id == TEAM_ENV
    if team:
        def make(split: str) -> Any:
            return make_team_env(split, kwargs)
    else:
        def make(split: str) -> Any:
            return gym.make(env_id, split=split, **kwargs)
    started, before = time.time(), {}
    for split in ("train", "val"):
        env, path = _split_table(make, split)
        before[split] = (path, known_entries(path) if path is not None else 0)
        env.close()
    raw = dict(hyperparams) if hyperparams is not None else load_hyperparams(algo, env_id)
    if team:
        model = train_team(kwargs, seed=seed, timesteps=timesteps, hyperparams=raw, progress_bar=progress_bar)
    else:
        model = train_compose(env_id, algo, kwargs, seed=seed, timesteps=timesteps, hyperparams=raw,
                              progress_bar=progress_bar)
    val = make("val")
    task = (val.unwrapped if hasattr(val, "unwrapped") else val).task
    sessions = np.arange(task.n_sessions)
    ranks, sizes = (team_ranks if team else compose_ranks)(model, val, sessions)
    baseline = np.asarray(task.rank(sessions, np.zeros(len(sessions), np.int64)))
    val.close()
    calls = sum(known_entries(path) - count for path, count in before.values() if path is not None)
    config = make_config(algo, env_id, kwargs, seed, raw, int(timesteps or float(raw.get("n_timesteps", 0))),
                         time.time() - started)
    report = {"val_ndcg10": float(task.ndcg_of_rank[ranks].mean()),
              "val_no_hint_ndcg10": float(task.ndcg_of_rank[baseline].mean()),
              "val_mean_hints": float(sizes.mean()), "llm_calls": int(calls)}
    config["val"] = report
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.zip")
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n",
                                         encoding="utf-8")
    return report
