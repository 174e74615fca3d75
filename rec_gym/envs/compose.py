"""The hint-composition environment: several hints for one session, chosen one step at a time."""

from __future__ import annotations

import os
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rec_gym.data.types import SessionDataset
from rec_gym.envs.actions import as_action
from rec_gym.envs.arguments import check_choice, check_int
from rec_gym.envs.re2llm import UnsupportedRenderMode
from rec_gym.envs.task import Re2LLMTask
from rec_gym.feedback.table import NO_RANKING
from rec_gym.knowledge.base import KnowledgeBase
from rec_gym.llm.prompts import combine_hints, render_prompt
from rec_gym.llm.protocol import LLMBackend

SHAPINGS = ("final", "per_step")


class Re2LLMComposeEnv(gym.Env):
    """
    ## Description

    The Re2LLM setting of :class:`~rec_gym.envs.re2llm.Re2LLMEnv` (a frozen LLM ranks 50 candidates for
    a session; hints from a knowledge base are appended to its prompt), with several hints per prompt.
    An episode is one session: each step adds one hint of the knowledge base or stops, up to
    ``max_hints`` hints, so choosing a set of hints is a sequential decision. The prompt carries the
    chosen hints as one set, each appended as `` Hint: <hint>`` in sorted order
    (:func:`rec_gym.llm.prompts.combine_hints`, format ``hint-set-v1``): the order in which they were
    chosen does not matter, and a one-hint set is exactly the one-hint env's prompt, so the two envs
    share feedback-table entries (one table file per dataset, split, KB and backend).

    ## Action Space

    ``Discrete(K + 1)``: ``0`` is STOP (end the episode with the hints chosen so far), ``k`` adds hint
    ``k`` (``env.unwrapped.task.kb[k - 1]``). Adding a hint already chosen is not allowed: it is
    masked (``info["action_mask"]``, :meth:`action_masks` for sb3-contrib's ``MaskablePPO``; see Action
    masks below) and, if taken anyway, changes nothing but uses up the step.

    ## Observation Space

    ``Box(float32, (d + K,))``: the session's observation (exactly the one-hint env's, ``observation=``),
    then a multi-hot vector of the hints chosen so far (1 at index ``k - 1`` when hint ``k`` is chosen).

    ## Rewards

    With ``NDCG@10`` of the LLM's rank of the true item and ``S`` the chosen set at the end:

    - ``reward_shaping="final"`` (default): 0 on every step but the last; the last step gets
      ``NDCG@10(S) - NDCG@10({})`` (``reward="ndcg_gain"``), ``NDCG@10(S)`` (``"ndcg"``) or the hit
      (``"hit"``). Only the final set is sent to the LLM.
    - ``reward_shaping="per_step"``: each step that adds a hint gets the change it made,
      ``NDCG@10(S + h) - NDCG@10(S)``; STOP and wasted steps get 0. Under ``"ndcg_gain"`` the episode's
      return equals the final-mode reward; every intermediate set is sent to the LLM.

    ## Starting State

    ``reset`` draws a session uniformly from the split with the generator seeded by
    ``reset(seed=...)``; ``reset(options={"session_index": i})`` takes session ``i`` of the split (an int or
    NumPy integer; ``session_index`` is the only option).
    No hint is chosen.

    ## Episode End

    Terminates on STOP or after ``max_hints`` steps; never truncated.

    ## Info

    Reset and step return the same keys, each with one type and shape for the env's lifetime (numbers,
    bools and fixed-length arrays only), so Gymnasium's vector envs, TorchRL and Minari batch and store them:

    | key | type | meaning |
    |---|---|---|
    | ``session_index`` | int | the session's row in the split |
    | ``action_mask`` | bool ``(K + 1,)`` | the actions allowed next: STOP and every hint not chosen yet |
    | ``hints`` | int64 ``(max_hints,)`` | the chosen actions in the order chosen, padded with -1 |
    | ``n_hints`` | int | how many hints are chosen (the entries of ``hints`` that are not -1) |
    | ``rank`` | int | 1-based rank of the true item with the chosen set; 0 = not in the LLM's list; -1 = not asked (at reset, and before the last step under ``"final"``) |
    | ``baseline_rank`` | int | the same with no hint; -1 = not asked |
    | ``no_ranking`` | bool | the reply for the chosen set ranked nothing; False when not asked |

    Texts are not in the info, because a string breaks TorchRL's and Minari's typed storage: the
    session's id is ``env.unwrapped.task.session_id(info["session_index"])`` and hint ``k`` is
    ``env.unwrapped.task.kb[k - 1]``. Nor is the action repeated: TorchRL writes info keys beside its
    own ``action`` entry.

    ## Action masks

    Gymnasium's wrappers do not forward attributes, so on a ``gym.make`` env read the mask with
    ``env.get_wrapper_attr("action_masks")()`` (what Stable-Baselines3's vector envs and sb3-contrib's
    ``MaskablePPO`` call, through any wrappers) or from ``info["action_mask"]``, which a vector env
    batches into a bool ``(num_envs, K + 1)`` array. ``env.unwrapped.action_masks()`` works too.

    ## Arguments

    | kwarg | type | default | meaning |
    |---|---|---|---|
    | ``max_hints`` | int | 3 | most hints per prompt (steps per episode) |
    | ``reward_shaping`` | str | ``"final"`` | ``"final"`` or ``"per_step"`` |
    | ``render_mode`` | str | ``None`` | ``"ansi"``: ``render()`` returns the prompt and the ranks |
    | others | | | as :class:`~rec_gym.envs.re2llm.Re2LLMEnv`: ``dataset``, ``data_dir``, ``llm``, ``kb``, ``reward``, ``split``, ``n_candidates``, ``seed``, ``encoder``, ``observation``, ``n_train``, ``feedback_table``, ``llm_kwargs`` |

    ## Version History

    - v0: initial release (hint-set format ``hint-set-v1``).

    ## Example

    >>> import gymnasium as gym, rec_gym
    >>> env = gym.make("Re2LLMCompose-Synthetic-v0", max_hints=2)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_space, bool(info["action_mask"].all())
    ((35,), Discrete(21), True)
    >>> obs, reward, terminated, truncated, info = env.step(3)
    >>> reward, terminated, bool(info["action_mask"][3])
    (0.0, False, False)
    >>> obs, reward, terminated, truncated, info = env.step(5)
    >>> terminated, info["hints"].tolist(), -1.0 <= reward <= 1.0
    (True, [3, 5], True)
    >>> env.get_wrapper_attr("action_masks")()[[0, 3, 5, 7]].tolist()
    [True, False, False, True]
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, dataset: "str | os.PathLike | SessionDataset" = "synthetic", data_dir: str | None = None,
                 llm: "str | LLMBackend" = "simulated", kb: "str | os.PathLike | Sequence[str] | KnowledgeBase" = "default",
                 reward: str = "ndcg_gain", split: str = "train", n_candidates: int = 50, seed: int = 0,
                 encoder: str = "minilm", n_train: int | None = None, feedback_table: str | os.PathLike | None = None,
                 llm_kwargs: dict[str, Any] | None = None, observation: str = "embedding", max_hints: int = 3,
                 reward_shaping: str = "final", render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UnsupportedRenderMode(f"render_mode={render_mode!r} is not supported; use None or 'ansi'")
        check_choice("reward_shaping", reward_shaping, SHAPINGS)
        max_hints = check_int("max_hints", max_hints, minimum=1)
        self.task = Re2LLMTask(dataset, data_dir, llm, kb, reward, split, n_candidates, seed, encoder, n_train,
                               feedback_table, llm_kwargs, observation=observation)
        n_hints = len(self.task.kb)
        if max_hints > n_hints:
            raise ValueError(f"max_hints={max_hints} is out of range; give an int in 1..{n_hints} "
                             "(the knowledge base's size)")
        self.max_hints = max_hints
        self.reward_shaping = reward_shaping
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(n_hints + 1)
        base = self.task.observation_space
        self.observation_space = spaces.Box(np.concatenate([base.low, np.zeros(n_hints, np.float32)]),
                                            np.concatenate([base.high, np.ones(n_hints, np.float32)]), dtype=np.float32)
        self._columns: dict[frozenset[int], int] = {}
        self._session = 0
        self._chosen: list[int] = []
        self._done = True
        self._t = 0
        self._rank = self._baseline = -1
        self._no_ranking = False

    # ------------------------------------------------------------------------------------------ feedback
    def column(self, actions: "frozenset[int] | Sequence[int]") -> int:
        """The feedback-table column of the prompt carrying these actions' hints (0 = no hint)."""
        key = frozenset(int(a) for a in actions if a)
        if key not in self._columns:
            self._columns[key] = self.task.table.add_columns([[self.task.kb[a - 1] for a in key]])[0]
        return self._columns[key]

    def set_rank(self, session: int, actions: "frozenset[int] | Sequence[int]") -> tuple[int, bool]:
        """``(rank code, no ranking)`` of the true item of ``session`` with these actions' hints (LLM call if unknown)."""
        col = self.column(actions)
        self.task.ensure(session, (col,))
        rank = int(self.task.table.ranks[session, col])
        return (0, True) if rank == NO_RANKING else (rank, False)

    # ------------------------------------------------------------------------------------------ gym API
    def action_masks(self) -> np.ndarray:
        """bool ``(K + 1,)``: STOP and every hint not chosen yet."""
        mask = np.ones(self.action_space.n, dtype=bool)
        mask[self._chosen] = False
        return mask

    def _observation(self) -> np.ndarray:
        chosen = np.zeros(self.action_space.n - 1, dtype=np.float32)
        chosen[np.asarray(self._chosen, dtype=np.int64) - 1] = 1.0
        return np.concatenate([self.task.observations[self._session], chosen])

    def _info(self) -> dict[str, Any]:
        hints = np.full(self.max_hints, -1, dtype=np.int64)
        hints[:len(self._chosen)] = self._chosen
        return {"session_index": self._session, "action_mask": self.action_masks(),
                "hints": hints, "n_hints": len(self._chosen), "rank": self._rank, "baseline_rank": self._baseline,
                "no_ranking": self._no_ranking}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._session = self.task.start_session(options, self.np_random)
        self._chosen, self._done, self._t = [], False, 0
        self._rank = self._baseline = -1
        self._no_ranking = False
        return self._observation(), self._info()

    def _score(self, rank: int, baseline: int) -> float:
        return float(self.task.reward(rank, baseline, 1))

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        a = as_action(action, self.action_space)
        before = list(self._chosen)
        if a and a not in self._chosen:
            self._chosen.append(a)
        self._t += 1
        terminated = a == 0 or self._t >= self.max_hints
        reward = 0.0
        if self.reward_shaping == "per_step" or terminated:
            baseline, _ = self.set_rank(self._session, ())
            rank, self._no_ranking = self.set_rank(self._session, self._chosen)
            self._rank, self._baseline = rank, baseline
            if self.reward_shaping == "final":
                reward = self._score(rank, baseline)
            elif self._chosen != before:
                previous, _ = self.set_rank(self._session, before)
                reward = self._score(rank, baseline) - self._score(previous, baseline)
        self._done = terminated
        return self._observation(), reward, terminated, False, self._info()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        request = self.task.table.request(self.task.dataset, self._session)
        hints = [self.task.kb[a - 1] for a in self._chosen]
        prompt = render_prompt(request.with_hint(combine_hints(hints)))
        return (f"session {self.task.session_id(self._session)}  hints chosen: {self._chosen or 'none'}\n"
                f"prompt: {prompt}\nrank with these hints: {self._rank}   rank without: {self._baseline}")

    def close(self) -> None:
        self.task.close()
        super().close()
