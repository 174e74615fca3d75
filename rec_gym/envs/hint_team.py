"""The team of hint retrievers (PettingZoo), behind :mod:`rec_gym.envs.hint_team_v0` which documents it."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from rec_gym.data.types import SessionDataset
from rec_gym.envs.actions import as_action
from rec_gym.envs.arguments import check_choice, check_int
from rec_gym.envs.re2llm import UnsupportedRenderMode
from rec_gym.envs.task import Re2LLMTask
from rec_gym.feedback.table import NO_RANKING
from rec_gym.knowledge.base import KnowledgeBase
from rec_gym.llm.prompts import combine_hints, render_prompt
from rec_gym.llm.protocol import LLMBackend

REWARD_MODES = ("team", "difference")


class HintTeamParallelEnv(ParallelEnv):
    """``n_agents`` retrievers pick one hint each (or none) for the same session; see :mod:`rec_gym.envs.hint_team_v0`."""

    metadata = {"render_modes": ["ansi"], "name": "hint_team_v0", "is_parallelizable": True, "render_fps": 4}

    def __init__(self, n_agents: int = 3, reward_mode: str = "team",
                 dataset: "str | os.PathLike | SessionDataset" = "synthetic", data_dir: str | None = None,
                 llm: "str | LLMBackend" = "simulated", kb: "str | os.PathLike | Sequence[str] | KnowledgeBase" = "default",
                 split: str = "train", n_candidates: int = 50, seed: int = 0, encoder: str = "hashing",
                 n_train: int | None = None, feedback_table: str | os.PathLike | None = None,
                 llm_kwargs: dict[str, Any] | None = None, observation: str = "profile",
                 render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UnsupportedRenderMode(f"render_mode={render_mode!r} is not supported; use None or 'ansi'")
        check_choice("reward_mode", reward_mode, REWARD_MODES)
        n_agents = check_int("n_agents", n_agents, minimum=1)
        self.task = Re2LLMTask(dataset, data_dir, llm, kb, "ndcg_gain", split, n_candidates, seed, encoder, n_train,
                               feedback_table, llm_kwargs, observation=observation)
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        self.possible_agents = [f"retriever_{k}" for k in range(n_agents)]
        self.agents: list[str] = []
        n_actions = self.task.n_actions
        self._action_spaces = {a: spaces.Discrete(n_actions) for a in self.possible_agents}
        self._observation_spaces = {a: spaces.Box(self.task.observation_space.low, self.task.observation_space.high,
                                                  dtype=np.float32) for a in self.possible_agents}
        self._columns: dict[frozenset[int], int] = {}
        self._n_agents = n_agents
        self._rng, _ = seeding.np_random(None)
        self._session = 0
        self._last: dict[str, Any] = {}

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_spaces[agent]

    # ------------------------------------------------------------------------------------------ feedback
    def team_rank(self, actions: "frozenset[int]") -> tuple[int, bool]:
        """``(rank code, no ranking)`` of the true item with the hints of ``actions`` (0s ignored)."""
        key = frozenset(a for a in actions if a)
        if key not in self._columns:
            self._columns[key] = self.task.table.add_columns([[self.task.kb[a - 1] for a in key]])[0]
        col = self._columns[key]
        self.task.ensure(self._session, (col,))
        rank = int(self.task.table.ranks[self._session, col])
        return (0, True) if rank == NO_RANKING else (rank, False)

    def team_reward(self, actions: "frozenset[int]", baseline: int) -> float:
        rank, _ = self.team_rank(actions)
        return float(self.task.ndcg_of_rank[rank] - self.task.ndcg_of_rank[baseline])

    # ------------------------------------------------------------------------------------------ API
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng, _ = seeding.np_random(seed)
        # PettingZoo's own API test resets with options={"options": 1}: other keys warn instead of raising.
        self._session = self.task.start_session(options, self._rng, warn_unknown=True)
        self.agents = list(self.possible_agents)
        self._last = {}
        obs = self.task.observations[self._session]
        info = self._info(frozenset(), 0.0, -1, -1, False)
        return {a: obs.copy() for a in self.agents}, {a: {**info, "hints": info["hints"].copy()} for a in self.agents}

    def _info(self, team: frozenset[int], team_reward: float, rank: int, baseline: int, no_ranking: bool) -> dict[str, Any]:
        """The info every agent gets; reset reports the empty team and ranks -1."""
        hints = np.full(self._n_agents, -1, dtype=np.int64)
        hints[:len(team)] = sorted(team)
        return {"session_index": self._session, "hints": hints, "n_hints": len(team), "team_reward": team_reward,
                "rank": rank, "baseline_rank": baseline, "no_ranking": no_ranking}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"no action for agent(s) {missing}; every agent acts on every step")
        chosen = {agent: as_action(actions[agent], self._action_spaces[agent]) for agent in self.agents}
        team = frozenset(chosen.values()) - {0}
        baseline, _ = self.team_rank(frozenset())
        rank, no_ranking = self.team_rank(team)
        team_reward = float(self.task.ndcg_of_rank[rank] - self.task.ndcg_of_rank[baseline])
        rewards = {}
        for agent, a in chosen.items():
            if self.reward_mode == "team":
                rewards[agent] = team_reward
            else:  # what the team would lose without this agent's hint (0 when another agent chose it too)
                others = frozenset(b for other, b in chosen.items() if other != agent) - {0}
                rewards[agent] = team_reward - (self.team_reward(others, baseline) if others != team else team_reward)
        info = self._info(team, team_reward, rank, baseline, no_ranking)
        obs = self.task.observations[self._session]
        self._last = {"chosen": chosen, **info}
        agents, self.agents = self.agents, []
        return ({a: obs.copy() for a in agents}, rewards, {a: True for a in agents}, {a: False for a in agents},
                {a: {**info, "hints": info["hints"].copy()} for a in agents})

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        request = self.task.table.request(self.task.dataset, self._session)
        if not self._last:
            return f"session {self.task.session_id(self._session)} (no action yet)\n{render_prompt(request)}"
        hints = [self.task.kb[a - 1] for a in self._last["hints"][:self._last["n_hints"]]]
        picks = ", ".join(f"{agent}: {a}" for agent, a in self._last["chosen"].items())
        return (f"session {self.task.session_id(self._session)}  {picks}\nprompt: {render_prompt(request.with_hint(combine_hints(hints)))}\n"
                f"rank with the team's hints: {self._last['rank']}   without: {self._last['baseline_rank']}   "
                f"team reward: {self._last['team_reward']:+.4f}")

    def close(self) -> None:
        self.task.close()
