"""The RLRF4Rec preference-selection environment: choose which of N LLM-written preference texts to use."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rec_gym.data import load_dataset
from rec_gym.data.embeddings import check_encoder, item_embeddings, session_observations
from rec_gym.data.profile import session_profiles
from rec_gym.data.types import SessionDataset
from rec_gym.envs.actions import as_action
from rec_gym.envs.arguments import (check_choice, check_dataset_arguments, check_int, check_mapping, check_number,
                                    check_reset_options, check_session_index)
from rec_gym.envs.task import RESET_OPTIONS
from rec_gym.llm import make_llm
from rec_gym.metrics import ndcg_at_k
from rec_gym.recsys.model import SASRecRecommender
from rec_gym.recsys.preferences import PROMPTS, embed_texts, generate_preferences, parse_preference
from rec_gym.recsys.reward import RecsysRewardModel, knowledge_recommender
from rec_gym.recsys.sequences import TRAIN_HISTORY, longer_sessions
from rec_gym.recsys.training import check_training_kwargs
from rec_gym.storage import cache_dir, stable_hash

REWARDS = ("score_gain", "score")
TOP_K = 10
SPLITS = ("train", "val", "test")
OBSERVATIONS = ("embedding", "profile", "embedding+profile")
# Enough epochs for the knowledge adaptor to learn what the texts add; trained once, then cached.
DEFAULT_RECSYS_TRAINING = {"epochs": 40, "seed": 0}


class RLRF4RecTask:
    """Sessions of one split, their N preference texts, the recommender's score of each, and the observations.

    Action ``a`` is no text for ``a = 0`` and text ``a - 1`` otherwise. The task answers what
    :class:`~rec_gym.envs.task.Re2LLMTask` answers (``n_actions``, ``rank``, ``reward``, ``ndcg_of_rank``,
    ``observations``, ``ensure``), so rec_gym's evaluation and baselines run on it unchanged.

    Attributes:
        dataset: all sessions (every split); ``rows`` int64 ``(n,)`` are this split's dataset rows.
        replies: ``replies[i][a]``, the raw reply of text ``a`` for session ``i`` of the split.
        ranks: int64 ``(n, N + 1)``: the target's rank among the candidates under each action (column 0:
            no text, column ``a``: text ``a - 1``).
        ndcg: float64 ``(n, N + 1)``: NDCG@10 of ``ranks``.
        well_formed: bool ``(n, N)``: the reply keeps the ``Factors:``/``Preference:`` structure.
        observations: float32 ``(n, d_session + N * d_text)``.
    """

    def __init__(self, dataset: "str | os.PathLike | SessionDataset" = "synthetic", data_dir: str | None = None,
                 writer: Any = "simulated", writer_kwargs: dict[str, Any] | None = None,
                 recommender: "str | os.PathLike | SASRecRecommender | None" = None, n_texts: int = 10,
                 temperature: float = 1.0, reward: str = "score_gain", split: str = "train", n_candidates: int = 50,
                 seed: int = 0, encoder: str = "hashing", observation: str = "profile", n_train: int | None = None,
                 recsys_training: dict[str, Any] | None = None, progress: bool = True, prompt: str = "titles") -> None:
        check_choice("reward", reward, REWARDS)
        check_choice("prompt", prompt, PROMPTS)
        check_choice("split", split, SPLITS)
        check_choice("observation", observation, OBSERVATIONS)
        check_int("n_texts", n_texts, minimum=1)
        check_number("temperature", temperature, minimum=0.0)
        check_encoder(encoder)
        n_candidates, seed, n_train = check_dataset_arguments(dataset, data_dir, n_candidates, seed, n_train)
        check_mapping("writer_kwargs", writer_kwargs)
        check_mapping("recsys_training", recsys_training)
        self.dataset = dataset if isinstance(dataset, SessionDataset) else load_dataset(
            dataset, data_dir, n_candidates=n_candidates, seed=seed, n_train=n_train)
        self.writer = make_llm(writer, **(writer_kwargs or {}))
        self.split, self.reward_mode, self.n_texts = split, reward, int(n_texts)
        self.rows = self.dataset.indices(split).astype(np.int64)
        if isinstance(recommender, SASRecRecommender):
            self.recommender = recommender
        elif recommender is not None:
            self.recommender = SASRecRecommender.load(recommender)
        else:
            training = {**DEFAULT_RECSYS_TRAINING, **(recsys_training or {})}
            train_history = int(training.pop("train_history", TRAIN_HISTORY))
            check_training_kwargs(training, train_history)
            sessions = None if isinstance(dataset, SessionDataset) else longer_sessions(
                self.dataset, dataset, data_dir, max_history=train_history, seed=seed, n_train=n_train)
            self.recommender = knowledge_recommender(self.dataset, self.writer, encoder, self.n_texts, temperature,
                                                     training, progress=progress, sessions=sessions, prompt=prompt)
        text_encoder = self.recommender.encoder or encoder
        # Bars only for the one-off training above: later builds read every text from the response cache.
        self.replies = generate_preferences(self.writer, self.dataset, self.rows, self.n_texts, temperature,
                                            progress=False, prompt=prompt)
        self.well_formed = np.array([[parse_preference(t) is not None for t in texts] for texts in self.replies],
                                    dtype=bool).reshape(len(self.rows), self.n_texts)
        scores_path = cache_dir("recsys_scores") / (f"{self.dataset.name}-{split}-" + stable_hash(
            self.dataset.fingerprint, self.recommender.weights_hash(), self.writer.name, self.n_texts, temperature) + ".npz")
        reward_model = RecsysRewardModel(self.recommender, self.dataset, table_path=scores_path)
        width = self.n_texts + 1
        texts = [t for texts in self.replies for t in [None, *texts]]
        self.ranks = reward_model.ranks(np.repeat(self.rows, width), texts).reshape(len(self.rows), width)
        reward_model.table.save()
        self.ndcg = np.asarray(ndcg_at_k(self.ranks, TOP_K), dtype=np.float64).reshape(self.ranks.shape)
        max_rank = self.dataset.candidates.shape[1]
        self.ndcg_of_rank = np.asarray(ndcg_at_k(np.arange(max_rank + 1), TOP_K), dtype=np.float64)
        flat = embed_texts([t for texts in self.replies for t in texts], text_encoder)
        text_obs = flat.reshape(len(self.rows), -1)
        self.text_dim = int(flat.shape[1])  # the width of one text's embedding, the last n_texts blocks of an observation
        parts, lows = [], []
        if observation in ("embedding", "embedding+profile"):
            embeddings = item_embeddings(self.dataset.catalog, encoder, dataset=self.dataset.name)
            parts.append(session_observations(self.dataset.history[self.rows], embeddings))
            lows.append(np.full(embeddings.shape[1], -1.0, dtype=np.float32))
        if observation in ("profile", "embedding+profile"):
            parts.append(session_profiles(self.dataset)[self.rows])
            lows.append(np.zeros(parts[-1].shape[1], dtype=np.float32))
        parts.append(text_obs)
        lows.append(np.full(text_obs.shape[1], -1.0, dtype=np.float32))
        self.observations = np.ascontiguousarray(np.hstack(parts), dtype=np.float32)
        self.observation_space = spaces.Box(np.concatenate(lows), 1.0, dtype=np.float32)

    @property
    def n_sessions(self) -> int:
        return len(self.rows)

    @property
    def n_actions(self) -> int:
        return self.n_texts + 1

    def ensure(self, table_rows: Any, actions: Any) -> None:
        """Nothing to fill: every score was computed when the task was made."""

    def rank(self, i: Any, action: Any) -> np.ndarray | int:
        """Rank(s) of the target among the candidates under ``action`` (vectorised like numpy indexing)."""
        r = self.ranks[i, action]
        return r if isinstance(r, np.ndarray) else int(r)

    def reward(self, rank: Any, baseline_rank: Any, action: Any) -> np.ndarray | float:
        """The reward of the given ranks (vectorised); ``score_gain`` of action 0 (no text) is exactly 0."""
        if self.reward_mode == "score":
            return self.ndcg_of_rank[rank]
        gain = self.ndcg_of_rank[rank] - self.ndcg_of_rank[baseline_rank]
        return np.where(np.asarray(action) == 0, 0.0, gain)

    def rewards(self) -> np.ndarray:
        """float64 ``(n, N + 1)``: the reward of every (session, action) pair."""
        actions = np.broadcast_to(np.arange(self.n_actions), self.ranks.shape)
        return np.asarray(self.reward(self.ranks, self.ranks[:, :1], actions), dtype=np.float64)

    def session_id(self, i: int) -> str:
        return str(self.dataset.session_ids[self.rows[i]])

    def text(self, i: int, action: int) -> str:
        """The preference text that ``action`` chooses for session ``i`` of the split: ``""`` for action 0."""
        return self.replies[i][action - 1] if action else ""


class RLRF4RecEnv(gym.Env):
    """
    ## Description

    RLRF4Rec (Sun et al., 2024) as a preference-selection task. For each session an LLM (``writer=``)
    has written ``N`` texts describing the user's preferences, sampled at a temperature from a
    factor-based prompt (name the factors that matter: genres, creators, era, themes, popularity; then
    the preference). A knowledge-augmented SASRec, which reads the session's items and a preference
    text, is the reward model: it ranks the session's 50 candidates (the true next item plus 49 random
    items) given the chosen text. The agent sees the session and the ``N`` texts and picks one.

    Texts, scores and the recommender are computed when the env is made and cached
    (``$REC_GYM_CACHE``: the texts in the response cache, the trained recommender under ``recsys/``,
    the scores under ``recsys_scores/``), so a step is a lookup.

    With ``writer="simulated"`` the texts are written from the items' attributes by a documented
    simulation (:mod:`rec_gym.llm.simulated_preferences`): most are faithful to the history, some are
    unhelpful, wrong or break the required structure. They are not an LLM's texts.

    ## Action Space

    ``Discrete(N + 1)`` (``n_texts=``, default 10, so ``Discrete(11)``): action 0 uses no text (the
    recommender reads the session's items alone, as the hint envs' action 0 adds no hint); action
    ``a >= 1`` uses text ``a - 1`` of the session (``env.unwrapped.task.replies[i][a - 1]``).

    ## Observation Space

    A float32 ``Box``: the session's observation (as in ``Re2LLMEnv``: ``"embedding"``, the mean item-text
    embedding, components in [-1, 1]; ``"profile"``, 15 session statistics in [0, 1]; or both), followed
    by the ``N`` texts' embeddings by the recommender's frozen text encoder (``N * d_text`` components in
    [-1, 1]; ``d_text`` = 256 for ``"hashing"``, 384 for ``"minilm"``). Nothing about the true next item.

    ## Rewards

    With ``s(a)`` = NDCG@10 of the true item when the recommender ranks the candidates reading text ``a``
    (``1 / log2(rank + 1)`` inside the top 10, else 0) and ``s(none)`` the same without a text:

    - ``"score_gain"`` (default): ``s(a) - s(none)``, in [-1, 1]; action 0 gets exactly 0.
    - ``"score"``: ``s(a)``, in [0, 1] (action 0: ``s(none)``).

    ## Starting State

    ``reset`` draws the episode's sessions uniformly from the split with the generator seeded by
    ``reset(seed=...)``; ``reset(options={"session_index": i})`` starts at session ``i`` and walks the split in order
    (``i`` an int or NumPy integer; ``session_index`` is the only option).

    ## Episode End

    ``sessions_per_episode`` sessions, one step each (default 1: a contextual bandit, every step has
    ``terminated=True``). Never truncated.

    ## Info

    Reset and step return the same keys, each with one type for the env's lifetime (numbers and bools
    only, so Gymnasium's vector envs, TorchRL and Minari batch and store them as typed arrays):

    | key | type | meaning |
    |---|---|---|
    | ``session_index`` | int | the session's row in the split |
    | ``well_formed`` | bool | the reply keeps the ``Factors:``/``Preference:`` structure; False for action 0 and at reset |
    | ``rank`` | int | 1-based rank of the true item among the candidates with the text; -1 at reset |
    | ``baseline_rank`` | int | the same without a text; -1 at reset |
    | ``ndcg`` | float | NDCG@10 of ``rank``; 0.0 at reset |
    | ``best_ndcg`` | float | the best NDCG@10 of the session's N texts (the oracle's), at reset too |

    Texts are not in the info, because a string breaks TorchRL's and Minari's typed storage: the
    session's id is ``env.unwrapped.task.session_id(info["session_index"])`` and the text of action
    ``a`` is ``env.unwrapped.task.text(info["session_index"], a)`` (``""`` for action 0). Nor is the
    action repeated: TorchRL writes info keys beside its own ``action`` entry.

    ## Arguments

    | kwarg | type | default | meaning |
    |---|---|---|---|
    | ``dataset`` | str or path | per id | as in ``Re2LLMEnv`` |
    | ``data_dir`` | path | ``None`` | folder holding the dataset's files |
    | ``writer`` | str or object | ``"simulated"`` | the backend that writes the texts: ``"simulated"``, ``"hf:<model>"``, ``"openai:<model>"`` or an object with ``write`` |
    | ``writer_kwargs`` | dict | ``None`` | extra arguments for the writer backend |
    | ``recommender`` | path or object | ``None`` | a knowledge-augmented SASRec folder (``rec-gym train-recsys --knowledge``); ``None`` trains one on the training sessions' texts (cached) |
    | ``recsys_training`` | dict | ``{"epochs": 40, "seed": 0}`` | arguments of :func:`~rec_gym.recsys.training.train_sasrec` when the env trains the recommender, and ``"train_history"`` (default 1000): history items per session it learns from where the env's 20 were cut (MovieLens day-sessions) |
    | ``n_texts`` | int | 10 | texts per session (N) |
    | ``temperature`` | float | 1.0 | sampling temperature of the texts |
    | ``prompt`` | str | ``"titles"`` | what the writer reads of the history: ``"titles"``; ``"facts"``, each title with its genres, creator and tier; or ``"profile"``, the titles and the history's most frequent genres, creator and decade with their counts. The last two are for a writer without world knowledge, such as the tiny one ``rec-gym rlrf4rec-loop`` trains |
    | ``reward`` | str | ``"score_gain"`` | ``"score_gain"`` or ``"score"`` |
    | ``split`` | str | ``"train"`` | ``"train"``, ``"val"`` or ``"test"`` |
    | ``n_candidates`` | int | 50 | candidate-set size |
    | ``sessions_per_episode`` | int | 1 | steps per episode |
    | ``seed`` | int | 0 | dataset seed (candidates and splits), not the env's RNG |
    | ``encoder`` | str | per id | text encoder of the session embedding and of a recommender the env trains: ``"minilm"``, ``"hashing"``, ``"st:<model>"`` |
    | ``observation`` | str | per id | ``"embedding"``, ``"profile"`` or ``"embedding+profile"`` |
    | ``n_train`` | int | ``None`` | keep only this many training sessions |
    | ``render_mode`` | str | ``None`` | ``"ansi"``: ``render()`` returns the session, the chosen text and the ranks |

    ## Vectorized environment

    No native vector env: ``gym.make_vec(id, num_envs=n)`` (``"sync"`` or ``"async"``) and SB3's
    ``make_vec_env`` wrap copies of this class; every copy reads the same cached texts, recommender and scores.

    ## Version History

    - v0: initial release (preference template ``rlrf4rec-preference-v1``); the ``prompt`` argument was added
      later, its default unchanged (``"facts"`` and ``"profile"`` have templates of their own).

    ## Example

    >>> import gymnasium as gym, rec_gym
    >>> env = gym.make("RLRF4Rec-Synthetic-v0", n_train=200, recsys_training={"epochs": 2})  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                                          # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step(1)                                 # doctest: +SKIP
    >>> terminated, -1.0 <= reward <= 1.0                                                       # doctest: +SKIP
    (True, True)
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, dataset: "str | os.PathLike | SessionDataset" = "synthetic", data_dir: str | None = None,
                 writer: Any = "simulated", writer_kwargs: dict[str, Any] | None = None,
                 recommender: "str | os.PathLike | SASRecRecommender | None" = None,
                 recsys_training: dict[str, Any] | None = None, n_texts: int = 10, temperature: float = 1.0,
                 reward: str = "score_gain", split: str = "train", n_candidates: int = 50, sessions_per_episode: int = 1,
                 seed: int = 0, encoder: str = "hashing", observation: str = "profile", n_train: int | None = None,
                 render_mode: str | None = None, prompt: str = "titles") -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; use None or 'ansi'")
        sessions_per_episode = check_int("sessions_per_episode", sessions_per_episode, minimum=1)
        self.task = RLRF4RecTask(dataset, data_dir, writer, writer_kwargs, recommender, n_texts, temperature, reward,
                                 split, n_candidates, seed, encoder, observation, n_train, recsys_training,
                                 prompt=prompt)
        self.render_mode = render_mode
        self.sessions_per_episode = sessions_per_episode
        self.action_space = spaces.Discrete(self.task.n_actions)
        self.observation_space = self.task.observation_space
        self._rewards = self.task.rewards()
        self._best_ndcg = self.task.ndcg[:, 1:].max(axis=1).tolist()
        self._order: list[int] = [0]
        self._t = 0
        self._last: tuple[int, int] | None = None  # (session, action) of the last step, for render

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        n = self.task.n_sessions
        start = check_reset_options(options, RESET_OPTIONS).get("session_index")
        if start is not None:
            start = check_session_index(start, n, self.task.split)
            self._order = [(start + k) % n for k in range(self.sessions_per_episode)]
        else:
            self._order = self.np_random.choice(n, size=self.sessions_per_episode,
                                                replace=self.sessions_per_episode > n).tolist()
        self._t, self._last = 0, None
        i = self._order[0]
        info = {"session_index": i, "well_formed": False, "rank": -1, "baseline_rank": -1, "ndcg": 0.0,
                "best_ndcg": self._best_ndcg[i]}
        return self.task.observations[i].copy(), info

    def step(self, action):
        if self._t >= len(self._order):
            raise RuntimeError("step() called after the episode ended; call reset() first")
        a = as_action(action, self.action_space)
        task, i = self.task, self._order[self._t]
        info = {"session_index": i, "well_formed": bool(a and task.well_formed[i, a - 1]),
                "rank": int(task.ranks[i, a]), "baseline_rank": int(task.ranks[i, 0]), "ndcg": float(task.ndcg[i, a]),
                "best_ndcg": self._best_ndcg[i]}
        reward = float(self._rewards[i, a])
        self._last = (i, a)
        self._t += 1
        terminated = self._t >= len(self._order)
        obs = task.observations[self._order[-1] if terminated else self._order[self._t]].copy()
        return obs, reward, terminated, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._last is None:
            return f"session {self.task.session_id(self._order[0])} (no action yet)"
        i, a = self._last
        return (f"session {self.task.session_id(i)}  action {a}  rank {int(self.task.ranks[i, a])} "
                f"(without text {int(self.task.ranks[i, 0])})\n{self.task.text(i, a)}")
