"""
# Hint team

| | |
|---|---|
| Import | ``from rec_gym.envs import hint_team_v0`` |
| Actions | Discrete |
| Parallel API | Yes |
| Manual control | No |
| Agents | ``agents = ["retriever_0", ..., "retriever_{n_agents - 1}"]`` |
| Agents count | ``n_agents`` (default 3) |
| Action shape | ``(1,)`` |
| Action values | ``Discrete(K + 1)`` |
| Observation shape | ``(d,)`` |
| Observation values | the session's observation (see :class:`~rec_gym.envs.re2llm.Re2LLMEnv`) |

A frozen LLM ranks 50 candidate items for a session (Re2LLM's setting); a team of retrievers each
picks one hint of the knowledge base, or none, for the same session, and the prompt carries the
distinct hints they chose as one hint set (`` Hint: <hint>`` each, sorted; format ``hint-set-v1``,
:func:`rec_gym.llm.prompts.combine_hints`). A cooperative one-step game: the team is rewarded by how
much its hints together improve the LLM's ranking of the true next item.

## Arguments

| kwarg | type | default | meaning |
|---|---|---|---|
| ``n_agents`` | int | 3 | retrievers in the team |
| ``reward_mode`` | str | ``"team"`` | ``"team"`` or ``"difference"`` (below) |
| ``dataset`` | str or path | ``"synthetic"`` | as for the Re2LLM envs (``"ml-1m"``, ``"steam"``, a session folder, ...) |
| ``observation`` | str | ``"profile"`` | ``"embedding"``, ``"profile"`` or ``"embedding+profile"`` (use ``"embedding"`` on real data) |
| ``encoder`` | str | ``"hashing"`` | item-text encoder for ``"embedding"`` (``"minilm"`` on real data) |
| ``llm``, ``llm_kwargs``, ``kb``, ``split``, ``n_candidates``, ``seed``, ``n_train``, ``data_dir``, ``feedback_table`` | | | as for the Re2LLM envs |
| ``render_mode`` | str | ``None`` | ``"ansi"``: ``render()`` returns the prompt, the picks and the ranks |

## Observation Space

Every agent observes the same float32 ``Box`` of the session (the one-hint env's observation).

## Action Space

``Discrete(K + 1)`` per agent: ``0`` adds nothing, ``k`` adds hint ``k`` of the knowledge base.
Agents choosing the same hint add it once.

## Rewards

With ``S`` the set of distinct hints chosen and ``T(S) = NDCG@10(S) - NDCG@10({})`` (the team's gain):

- ``reward_mode="team"``: every agent gets ``T(S)``.
- ``reward_mode="difference"``: agent ``i`` gets ``T(S) - T(S_-i)``, where ``S_-i`` is the set the
  other agents chose: its counterfactual contribution (difference rewards). An agent that adds no
  hint, or a hint another agent also chose, gets 0.

## Starting State and Episode End

``reset(seed=...)`` draws a session uniformly from the split (``options={"session_index": i}`` takes
session ``i``, an int or NumPy integer; ``session_index`` is the only option, and another key is
said in a ``UserWarning`` and ignored, because PettingZoo's API test passes one). One simultaneous step
ends the episode: every agent is terminated, none truncated. An agent's action is what its
``Discrete`` space's ``contains`` accepts, bools aside.

## Info

Reset and step give every agent the same keys, each with one type and shape for the env's lifetime
(numbers, bools and fixed-length arrays only, so vectorised and recorded infos batch into typed arrays):

| key | type | meaning |
|---|---|---|
| ``session_index`` | int | the session's row in the split |
| ``hints`` | int64 ``(n_agents,)`` | the team's distinct hint actions, sorted, padded with -1 |
| ``n_hints`` | int | how many distinct hints the team chose (0 at reset) |
| ``team_reward`` | float | ``T(S)``; 0.0 at reset |
| ``rank``, ``baseline_rank`` | int | 1-based rank of the true item with the team's hints and with none; 0 = not in the LLM's list; -1 at reset |
| ``no_ranking`` | bool | the reply for the team's hints ranked nothing; False at reset |

Texts are not in the info: the session's id is ``env.unwrapped.task.session_id(info["session_index"])``
and hint ``k`` is ``env.unwrapped.task.kb[k - 1]``. Nor are the agents' actions, which
the caller passed to ``step``.

## Version History

- v0: initial release.

## Example

>>> from rec_gym.envs import hint_team_v0
>>> env = hint_team_v0.parallel_env(n_agents=2, reward_mode="difference")
>>> observations, infos = env.reset(seed=0)
>>> env.agents
['retriever_0', 'retriever_1']
>>> observations, rewards, terminations, truncations, infos = env.step({"retriever_0": 3, "retriever_1": 3})
>>> rewards["retriever_0"] == rewards["retriever_1"] == 0.0, all(terminations.values()), env.agents
(True, True, [])
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import parallel_to_aec

from rec_gym.envs.hint_team import HintTeamParallelEnv


def parallel_env(**kwargs: Any) -> HintTeamParallelEnv:
    """The team as a PettingZoo ``ParallelEnv`` (all agents act at once)."""
    return HintTeamParallelEnv(**kwargs)


def raw_env(**kwargs: Any):
    """The team as an AEC env, agents acting in turn, without PettingZoo's checking wrappers."""
    return parallel_to_aec(parallel_env(**kwargs))


def env(**kwargs: Any):
    """The team as an AEC env with PettingZoo's checks: out-of-range actions and calls out of order raise."""
    return wrappers.OrderEnforcingWrapper(wrappers.AssertOutOfBoundsWrapper(raw_env(**kwargs)))


__all__ = ["env", "parallel_env", "raw_env", "HintTeamParallelEnv"]
