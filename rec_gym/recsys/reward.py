"""The recommender as a reward model (RLRF4Rec step 3): how useful is a preference text for a session?

``score(row, text)`` is NDCG@10 of the session's target when the knowledge-augmented SASRec ranks
the session's candidates (the environments' 50) reading ``text``; ``text=None`` is the sequence
alone. Scores are cached per (session, variant key) in a :class:`RecsysScoreTable`, the feedback
table's pattern for free-text variants: entries keyed by ``variant_key(text=...)``, a provenance
record (dataset and fingerprint, the recommender's weights hash, the text encoder) that a stored
table must match, a checksum, and atomic saves.

:func:`knowledge_recommender` trains the knowledge-augmented model on the training sessions'
sampled preference texts, or loads it from the cache when the same one was trained before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rec_gym.data.embeddings import item_embeddings
from rec_gym.data.types import SessionDataset
from rec_gym.feedback.table import ProvenanceMismatch, variant_key
from rec_gym.metrics import ndcg_at_k
from rec_gym.recsys.model import SASRecRecommender, candidate_ranks
from rec_gym.recsys.preferences import embed_texts, generate_preferences
from rec_gym.storage import atomic_path, cache_dir, stable_hash

TOP_K = 10


class RecsysScoreTable:
    """Target ranks (1-based, among the session's candidates) keyed by (dataset row, variant key).

    On disk: one ``.npz`` (no pickle) with ``rows`` int64, ``keys`` (variant keys), ``ranks`` int16,
    the ``provenance`` JSON and a SHA-256 ``checksum`` of them.
    """

    def __init__(self, provenance: dict[str, Any], path: str | os.PathLike | None = None) -> None:
        self.provenance = dict(provenance)
        self.path = Path(path) if path is not None else None
        self.entries: dict[tuple[int, str], int] = {}
        if self.path is not None and self.path.exists():
            self._read(self.path)

    @staticmethod
    def _checksum(rows: np.ndarray, keys: np.ndarray, ranks: np.ndarray, provenance_json: str) -> str:
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
        digest.update("\n".join(keys.tolist()).encode("utf-8"))
        digest.update(np.ascontiguousarray(ranks, dtype="<i2").tobytes())
        digest.update(provenance_json.encode("utf-8"))
        return digest.hexdigest()

    def _read(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                rows, keys, ranks = data["rows"], data["keys"], data["ranks"]
                provenance_json, checksum = str(data["provenance"]), str(data["checksum"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            raise ValueError(f"{path}: not a readable recsys score table; move it aside (it is a cache) and run again") from None
        if checksum != self._checksum(rows, keys, ranks, provenance_json):
            raise ValueError(f"{path}: contents do not match their checksum; move it aside (it is a cache) and run again")
        stored = json.loads(provenance_json)
        if stored != self.provenance:
            diff = sorted(k for k in set(stored) | set(self.provenance) if stored.get(k) != self.provenance.get(k))
            raise ProvenanceMismatch(f"{path} was scored with other settings ({', '.join(diff)} differ); pass another path")
        self.entries.update(((int(r), str(k)), int(v)) for r, k, v in zip(rows, keys, ranks))

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("this score table has no path; pass save(path=...)")
        pairs = sorted(self.entries.items())
        rows = np.array([r for (r, _), _ in pairs], dtype=np.int64)
        keys = np.array([k for (_, k), _ in pairs], dtype="<U64")
        ranks = np.array([v for _, v in pairs], dtype=np.int16)
        provenance_json = json.dumps(self.provenance, sort_keys=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, rows=rows, keys=keys, ranks=ranks, provenance=np.array(provenance_json),
                     checksum=np.array(self._checksum(rows, keys, ranks, provenance_json)))
        self.path = path
        return path


class RecsysRewardModel:
    """Scores preference texts for sessions with a knowledge-augmented SASRec.

    Args:
        recommender: a knowledge-augmented :class:`~rec_gym.recsys.model.SASRecRecommender`
            (``config.text_dim > 0``) whose ``info["encoder"]`` names the text encoder it was trained with.
        dataset: the sessions (rows are dataset rows) with their candidate sets.
        table_path: where the score table is kept; ``None`` keeps it in memory.
    """

    def __init__(self, recommender: SASRecRecommender, dataset: SessionDataset,
                 table_path: str | os.PathLike | None = None) -> None:
        if not recommender.config.knowledge or not recommender.encoder:
            raise ValueError("the reward model needs a knowledge-augmented SASRec (trained with preference texts and "
                             "an encoder); train one with `rec-gym train-recsys --knowledge`")
        self.recommender = recommender
        self.dataset = dataset
        self.encoder = str(recommender.encoder)
        self.table = RecsysScoreTable({"dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint,
                                       "recommender": recommender.weights_hash(), "encoder": self.encoder,
                                       "metric": "rank among candidates"}, table_path)

    def ranks(self, rows: Sequence[int], texts: Sequence[str | None]) -> np.ndarray:
        """int64 ``(len(rows),)``: the target's rank among the candidates of ``rows[k]`` reading ``texts[k]``."""
        if len(rows) != len(texts):
            raise ValueError(f"{len(rows)} rows but {len(texts)} texts")
        keys = [(int(r), variant_key(text=t)) for r, t in zip(rows, texts)]
        todo = [k for k, key in enumerate(keys) if key not in self.table.entries]
        if todo:
            self._item_scores(np.array([int(rows[k]) for k in todo]), [texts[k] for k in todo])
        return np.array([self.table.entries[key] for key in keys], dtype=np.int64)

    def _item_scores(self, rows: np.ndarray, texts: Sequence[str | None]) -> np.ndarray:
        """float ``(len(rows), n_items)``: the recommender's item scores for each session reading its text; the
        target ranks they give are stored in the table on the way."""
        embeddings = np.full((len(rows), self.recommender.config.text_dim), np.nan, dtype=np.float32)
        written = [k for k, t in enumerate(texts) if t is not None]
        if written:
            embeddings[written] = embed_texts([texts[k] for k in written], self.encoder)
        scores = self.recommender.scores([self.dataset.history_of(int(r)) for r in rows], embeddings)
        for row, text, rank in zip(rows, texts, candidate_ranks(scores, self.dataset, rows)):
            self.table.entries[(int(row), variant_key(text=text))] = int(rank)
        return scores

    def log_probabilities(self, rows: Sequence[int], texts: Sequence[str | None]) -> np.ndarray:
        """float64 ``(len(rows),)``: log-probability of each session's target under the recommender's softmax
        over the session's candidates, reading its text: a graded score where NDCG@10 is 0 for every rank
        past 10. Not cached itself, but the ranks it implies are, so :meth:`scores` of the same pairs is a lookup."""
        if len(rows) != len(texts):
            raise ValueError(f"{len(rows)} rows but {len(texts)} texts")
        scores = self._item_scores(np.asarray(rows), texts)
        out = np.empty(len(rows), dtype=np.float64)
        for k, row in enumerate(rows):
            s = scores[k, self.dataset.candidates_of(int(row))].astype(np.float64)
            out[k] = s[int(self.dataset.target_pos[int(row)])] - s.max() - np.log(np.exp(s - s.max()).sum())
        return out

    def scores(self, rows: Sequence[int], texts: Sequence[str | None]) -> np.ndarray:
        """float64 ``(len(rows),)``: NDCG@10 of each session's target reading its text."""
        return np.asarray(ndcg_at_k(self.ranks(rows, texts), TOP_K), dtype=np.float64).reshape(-1)

    def score(self, row: int, text: str | None) -> float:
        """NDCG@10 of session ``row``'s target among its candidates when the recommender reads ``text``."""
        return float(self.scores([row], [text])[0])


def knowledge_recommender(dataset: SessionDataset, writer: Any, encoder: str = "minilm", n_texts: int = 10,
                          temperature: float = 1.0, training: dict[str, Any] | None = None, use_cache: bool = True,
                          progress: bool = True, sessions: SessionDataset | None = None,
                          item_text: bool = True, prompt: str = "titles") -> SASRecRecommender:
    """A knowledge-augmented SASRec trained on ``n_texts`` preference texts per training session.

    ``item_text``: items also carry their own texts, embedded by ``encoder``, and preference texts are
    matched against them (:mod:`rec_gym.recsys.sasrec`); ``False`` keeps items ID-only. ``prompt``: what the
    writer reads of each item (:func:`~rec_gym.recsys.preferences.preference_prompt`).

    The texts come from ``writer`` (cached in the response cache); the trained model is cached under
    ``$REC_GYM_CACHE/recsys/`` keyed by the dataset, the writer, the encoder, the sampling and the
    training arguments, so a second call loads it. ``sessions``: the same sessions with longer histories
    for training (:func:`~rec_gym.recsys.sequences.longer_sessions`).
    """
    from rec_gym.recsys.training import train_sasrec

    training = dict(training or {})
    key = stable_hash("ka-sasrec-v2", item_text, dataset.name, dataset.fingerprint, getattr(writer, "name", str(writer)), encoder,
                      n_texts, temperature, training, sessions.fingerprint if sessions is not None else None,
                      *(() if prompt == "titles" else (prompt,)), length=20)
    folder = cache_dir("recsys") / f"{dataset.name}-ka-{key}"
    if use_cache and (folder / "config.json").is_file():
        try:
            return SASRecRecommender.load(folder, encoder=encoder)  # the caller's own encoder, trained into the cache
        except ValueError as exc:  # damaged, or its save was killed: it is a cache, so train again
            print(f"rec_gym: the cached recommender is refused, so it is trained again ({exc})", file=sys.stderr,
                  flush=True)
    rows = dataset.indices("train")
    replies = generate_preferences(writer, dataset, rows, n=n_texts, temperature=temperature, progress=progress,
                                   prompt=prompt)
    flat = embed_texts([t for texts in replies for t in texts], encoder, progress=progress)
    texts = {int(r): flat[k * n_texts:(k + 1) * n_texts] for k, r in enumerate(rows)}
    item_texts = item_embeddings(dataset.catalog, encoder, dataset=dataset.name) if item_text else None
    recommender = train_sasrec(dataset, texts=texts, encoder=encoder, progress=progress, sessions=sessions,
                               item_texts=item_texts, **training)
    recommender.info["preference_texts"] = {"writer": getattr(writer, "name", str(writer)), "n": n_texts,
                                            "temperature": temperature}
    if use_cache:
        recommender.save(folder)
    return recommender
