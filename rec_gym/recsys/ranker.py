"""The knowledge-augmented recommender as a ranking backend: a cheap, model-free reward for the hint envs.

:class:`RecsysRanker` implements the ranking protocol (``name``, ``rank(requests)``): it ranks a
request's candidates with a knowledge-augmented SASRec that reads the request's hint as its
preference text (no hint: the sequence alone). Passed as ``llm=`` to any Re2LLM env, every hint is
then scored by the recommender instead of the LLM (``reward_source="recsys"`` in RLRF4Rec's terms)::

    ranker = RecsysRanker.load("runs/sasrec-ka", dataset)
    env = gym.make("Re2LLM-Synthetic-v0", llm=ranker)

What it is: a fast, deterministic reward that says how much a hint's words move an ID-based
recommender trained with preference texts, one forward pass per (session, hint) on a CPU. What it
is not: the frozen LLM's reaction to the hint. The recommender never saw the hints during training
(only preference texts) and reads them through a frozen sentence encoder, so its rewards agree with
the LLM's only as far as the benchmark's Spearman figure says (benchmarks/rlrf4rec/).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from rec_gym.data.types import Catalog
from rec_gym.llm.protocol import RankRequest, Ranking
from rec_gym.recsys.model import SASRecRecommender
from rec_gym.recsys.preferences import embed_texts


class RecsysRanker:
    """Ranks candidates with a knowledge-augmented SASRec reading the hint (see the module docstring).

    Args:
        recommender: a knowledge-augmented SASRec (``config.text_dim > 0``).
        catalog: the catalog it was trained on: items are matched by ``item_id``.
    """

    def __init__(self, recommender: SASRecRecommender, catalog: Catalog) -> None:
        if not recommender.config.knowledge or not recommender.encoder:
            raise ValueError("RecsysRanker needs a knowledge-augmented SASRec (`rec-gym train-recsys --knowledge`)")
        if recommender.config.n_items != len(catalog):
            raise ValueError(f"the recommender scores {recommender.config.n_items} items but the catalog has "
                             f"{len(catalog)}; pass the catalog of the dataset it was trained on")
        self.recommender = recommender
        self.catalog = catalog
        self.name = f"recsys-sasrec-ka({recommender.weights_hash()},{recommender.encoder})"

    @classmethod
    def load(cls, path: str | os.PathLike, dataset) -> "RecsysRanker":
        """The ranker of a saved recommender folder, for ``dataset``'s catalog."""
        return cls(SASRecRecommender.load(path), dataset.catalog)

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """Candidate positions best first, the whole candidate set, one list per request."""
        histories = [np.array([self.catalog.index_of(i.item_id) for i in r.history], dtype=np.int64) for r in requests]
        texts = np.full((len(requests), self.recommender.config.text_dim), np.nan, dtype=np.float32)
        hinted = [k for k, r in enumerate(requests) if r.hint]
        if hinted:
            texts[hinted] = embed_texts([requests[k].hint for k in hinted], str(self.recommender.encoder))
        scores = self.recommender.scores(histories, texts)
        out: list[Ranking] = []
        for k, r in enumerate(requests):
            cand = np.array([self.catalog.index_of(i.item_id) for i in r.candidates], dtype=np.int64)
            out.append(np.argsort(-scores[k, cand], kind="stable").tolist())
        return out
