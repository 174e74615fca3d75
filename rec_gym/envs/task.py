"""What the single and the vector Re2LLM environments share: sessions, hints, observations, feedback.

:class:`Re2LLMTask` resolves the user-facing arguments (dataset, llm, kb, ...) once, computes each
session's observation, opens the feedback table and turns ranks into rewards. The environments
only add Gymnasium's stepping and seeding on top of it.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces

from rec_gym.data import load_dataset
from rec_gym.data.embeddings import check_encoder
from rec_gym.data.observations import OBSERVATIONS, observation_matrix
from rec_gym.data.profile import PROFILE_FEATURES
from rec_gym.data.types import SessionDataset
from rec_gym.envs.arguments import (check_choice, check_dataset_arguments, check_mapping, check_path,
                                    check_reset_options, check_session_index)
from rec_gym.feedback.table import NO_RANKING, UNKNOWN, FeedbackTable, kb_columns, make_provenance
from rec_gym.knowledge.base import KnowledgeBase, load_knowledge_base
from rec_gym.llm.lazy import lazy_llm
from rec_gym.llm.protocol import LLMBackend
from rec_gym.llm.prompts import render_prompt

REWARDS = ("ndcg_gain", "ndcg", "hit")
REWARD_SOURCES = ("llm", "recsys")
SPLITS = ("train", "val", "test")
RESET_OPTIONS = ("session_index",)  # what reset(options=...) of every single-session-start env takes
TOP_K = 10


def recsys_backend(dataset: SessionDataset, writer: LLMBackend, recommender: Any, encoder: str,
                   sessions: Any = None) -> LLMBackend:
    """The knowledge-augmented SASRec as the ranker of the hint prompts (``reward_source="recsys"``).

    ``recommender`` is a trained model or its folder (``rec-gym train-recsys --knowledge``); ``None``
    trains one on preference texts that ``writer`` (the env's ``llm``) writes for the training sessions,
    cached under ``$REC_GYM_CACHE/recsys``; ``sessions`` is a callable giving the same sessions with longer
    histories for that training (or ``None``), called only when a model is trained.
    """
    from rec_gym.recsys.model import SASRecRecommender
    from rec_gym.recsys.ranker import RecsysRanker
    from rec_gym.recsys.reward import knowledge_recommender

    if recommender is None:
        model = knowledge_recommender(dataset, writer, encoder=encoder, sessions=sessions() if sessions else None)
    elif isinstance(recommender, SASRecRecommender):
        model = recommender
    else:
        model = SASRecRecommender.load(recommender)
    return RecsysRanker(model, dataset.catalog)


class Re2LLMTask:
    """The sessions of one split, the knowledge base, the backend, the observations and the feedback table.

    Attributes:
        dataset: all sessions of the dataset (every split).
        rows: int64 ``(n,)``: dataset rows of this split, in table order.
        observations: float32 ``(n, d)``, read-only: each session's observation (``observation=``): the
            mean history-item embedding, the session profile (:mod:`rec_gym.data.profile`), or both;
            memory-mapped from the cache (:func:`~rec_gym.data.observations.observation_matrix`).
        observation_space: the ``Box`` of one observation: ``[-1, 1]`` per embedding component,
            ``[0, 1]`` per profile feature.
        table: the :class:`~rec_gym.feedback.table.FeedbackTable` of this split.
    """

    def __init__(self, dataset: "str | os.PathLike | SessionDataset" = "synthetic", data_dir: str | None = None,
                 llm: "str | LLMBackend" = "simulated", kb: "str | os.PathLike | Sequence[str] | KnowledgeBase" = "default",
                 reward: str = "ndcg_gain", split: str = "train", n_candidates: int = 50, seed: int = 0,
                 encoder: str = "minilm", n_train: int | None = None, feedback_table: str | os.PathLike | None = None,
                 llm_kwargs: dict[str, Any] | None = None, persist: bool = True,
                 observation: str = "embedding", reward_source: str = "llm",
                 recommender: "str | os.PathLike | Any | None" = None) -> None:
        check_choice("reward", reward, REWARDS)
        check_choice("split", split, SPLITS)
        check_choice("observation", observation, OBSERVATIONS)
        check_choice("reward_source", reward_source, REWARD_SOURCES)
        check_encoder(encoder)
        n_candidates, seed, n_train = check_dataset_arguments(dataset, data_dir, n_candidates, seed, n_train)
        check_path("feedback_table", feedback_table)
        check_mapping("llm_kwargs", llm_kwargs)
        self.dataset = dataset if isinstance(dataset, SessionDataset) else load_dataset(
            dataset, data_dir, n_candidates=n_candidates, seed=seed, n_train=n_train)
        self.kb = load_knowledge_base(kb, self.dataset.domain)
        # Shared within the process, and a model loads only on the first table miss (rec_gym.llm.lazy).
        self.backend = lazy_llm(llm, **(llm_kwargs or {}))
        if reward_source == "recsys":
            from rec_gym.recsys.sequences import longer_sessions

            sessions = None if isinstance(dataset, SessionDataset) else (
                lambda: longer_sessions(self.dataset, dataset, data_dir, seed=seed, n_train=n_train))
            self.backend = recsys_backend(self.dataset, self.backend, recommender, encoder, sessions)
        elif recommender is not None:
            raise ValueError("recommender= is read only with reward_source='recsys'")
        self.reward_mode = reward
        self.split = split
        self.rows = self.dataset.indices(split).astype(np.int64)
        self.observation = observation
        # Built once per machine and memory-mapped: every copy of this env, in any process, shares it.
        self.observations = observation_matrix(self.dataset, self.rows, observation, encoder)
        n_profile = len(PROFILE_FEATURES) if "profile" in observation else 0
        # Item embeddings are unit vectors, so every component of their mean lies in [-1, 1]; profiles lie in [0, 1].
        lows = np.concatenate([np.full(self.observations.shape[1] - n_profile, -1.0, dtype=np.float32),
                               np.zeros(n_profile, dtype=np.float32)])
        self.observation_space = spaces.Box(lows, 1.0, dtype=np.float32)
        provenance = make_provenance(self.dataset, split, self.kb, self.backend.name)
        max_rank = self.dataset.candidates.shape[1]  # the largest candidate set; smaller ones are padded
        if persist or feedback_table is not None:
            self.table = FeedbackTable.open(provenance, self.rows, kb_columns(self.kb), path=feedback_table,
                                            max_rank=max_rank)
        else:
            self.table = FeedbackTable(provenance, self.rows, kb_columns(self.kb), max_rank=max_rank)
        # NDCG@10 and HR@10 of every possible rank code, so rewards are one array lookup.
        ranks = np.arange(max_rank + 1)
        self.ndcg_of_rank = np.zeros(max_rank + 1)
        self.ndcg_of_rank[1:TOP_K + 1] = 1.0 / np.log2(ranks[1:TOP_K + 1] + 1.0)
        self.hit_of_rank = ((ranks >= 1) & (ranks <= TOP_K)).astype(np.float64)
        self.autosave_every = 256
        self._action_columns_table = self.table  # the table object _action_columns was resolved in
        self._action_columns = self._resolve_action_columns()

    @property
    def n_sessions(self) -> int:
        return len(self.rows)

    @property
    def n_actions(self) -> int:
        return len(self.kb) + 1

    @property
    def action_columns(self) -> np.ndarray:
        """int64 ``(K + 1,)``: the table columns of the one-hint actions (no hint, then each KB hint), by variant key.

        The table file is shared with the composition and team envs, which add hint-set columns to it,
        so a one-hint reader reads these columns, never "all columns". They are ``0..K``, column ``a``
        holding action ``a``: :meth:`FeedbackTable.open <rec_gym.feedback.table.FeedbackTable.open>`
        puts the columns it is given first and appends the others the file holds, and a copy keeps the
        order. The envs' ``step`` and :meth:`ensure` / :meth:`rank` callers that pass actions rely on
        it; it is checked when the task is made and again whenever ``table`` is another object.
        """
        if self._action_columns_table is not self.table:
            self._action_columns_table = self.table
            self._action_columns = self._resolve_action_columns()
        return self._action_columns

    def _resolve_action_columns(self) -> np.ndarray:
        found = [self.table.column(c) for c in kb_columns(self.kb)]
        if found != list(range(self.n_actions)):
            raise RuntimeError(f"feedback table {self.table.path}: the one-hint columns (no hint, then the "
                               f"{len(self.kb)} KB hints) are at columns {found}, not 0..{len(self.kb)}; open it "
                               "with FeedbackTable.open(..., kb_columns(kb)), which puts them first")
        return np.asarray(found, dtype=np.int64)

    def n_missing(self, table_rows: Sequence[int] | np.ndarray | None = None) -> int:
        """Unknown entries among ``table_rows`` (default: all) x the one-hint columns (what :meth:`fill_all` fills)."""
        self.table.refresh()
        columns = self.action_columns
        ranks = (self.table.ranks[:, columns] if table_rows is None
                 else self.table.ranks[np.ix_(np.asarray(table_rows, dtype=np.int64), columns)])
        return int(np.count_nonzero(ranks == UNKNOWN))

    def ensure(self, table_rows: Sequence[int] | np.ndarray, actions: Sequence[int] | np.ndarray) -> None:
        """Fill the unknown entries among ``table_rows`` x ``actions`` (a live LLM call, when any).

        ``actions`` are table columns: action ``a`` of the one-hint env is column ``a``
        (:attr:`action_columns`); the composition and team envs pass the columns of their hint sets.

        Raises :class:`~rec_gym.llm.protocol.BackendUnavailable` when the backend got no answer for some
        of them (naming the server and the cause); those stay unknown, so the same call succeeds later.
        """
        table_rows, actions = np.atleast_1d(table_rows), np.atleast_1d(actions)
        if np.any(self.table.ranks[np.ix_(table_rows, actions)] == UNKNOWN):
            self.table.fill(self.dataset, self.backend, table_rows, actions,
                            autosave_every=self.autosave_every if self.table.path else 0)

    def fill_all(self, progress: bool = True) -> None:
        """Fill every (session, action) entry of this split and save the table.

        Only the one-hint columns (no hint and each KB hint) are filled: hint-set columns that the
        composition or team envs added to the same file are theirs to fill.
        """
        self.table.fill(self.dataset, self.backend, columns=self.action_columns, progress=progress,
                        autosave_every=4096 if self.table.path else 0)
        if self.table.path is not None:
            self.table.save()

    def start_session(self, options: dict[str, Any] | None, rng: np.random.Generator, *,
                      warn_unknown: bool = False) -> int:
        """The session an episode starts at: ``options["session_index"]`` when given, else one drawn by ``rng``.

        ``options`` is ``reset``'s: ``None`` or a dict whose only key is ``"session_index"`` (an int or
        NumPy integer row of the split); anything else raises ``TypeError`` or ``ValueError``, except
        that other keys only warn with ``warn_unknown`` (:func:`~rec_gym.envs.arguments.check_reset_options`).
        """
        start = check_reset_options(options, RESET_OPTIONS, warn_unknown=warn_unknown).get("session_index")
        if start is None:
            return int(rng.integers(self.n_sessions))
        return check_session_index(start, self.n_sessions, self.split)

    def rank(self, i: int | np.ndarray, action: int | np.ndarray) -> np.ndarray | int:
        """Rank code(s) of the target with ``action``'s hint (a table column, as in :meth:`ensure`), ``NO_RANKING``
        read as 0 (not ranked)."""
        r = self.table.ranks[i, action]
        return np.where(r == NO_RANKING, 0, r) if isinstance(r, np.ndarray) else (0 if r == NO_RANKING else int(r))

    def reward(self, rank: np.ndarray | int, baseline_rank: np.ndarray | int, action: np.ndarray | int) -> np.ndarray | float:
        """The reward of the chosen ranks (vectorised); ``ndcg_gain`` of action 0 is exactly 0."""
        if self.reward_mode == "hit":
            return self.hit_of_rank[rank]
        if self.reward_mode == "ndcg":
            return self.ndcg_of_rank[rank]
        gain = self.ndcg_of_rank[rank] - self.ndcg_of_rank[baseline_rank]
        return np.where(np.asarray(action) == 0, 0.0, gain)

    def prompt(self, i: int, action: int) -> str:
        return render_prompt(self.table.request(self.dataset, i).with_hint(self.kb.hint_for_action(action)))

    def session_id(self, i: int) -> str:
        return str(self.dataset.session_ids[self.rows[i]])

    def close(self) -> None:
        if self.table.path is not None and self.table._unsaved:
            self.table.save()
