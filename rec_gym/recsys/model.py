"""Trained sequential recommenders: SASRec (plain or knowledge-augmented), popularity, and their files.

A recommender scores every catalog item for a batch of sessions:
``scores(histories, texts=None) -> float32 (n_sessions, n_items)``, where ``histories`` are arrays of
catalog indices oldest first and ``texts`` (knowledge-augmented SASRec only) are preference-text
embeddings, float32 ``(n_sessions, text_dim)``, with NaN rows for "no text".

A SASRec recommender is stored as a folder: ``model.safetensors`` (the weights, no pickle) and
``config.json`` (the model's shape, the dataset it was trained on, the text encoder, the training
arguments and the measured metrics).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rec_gym.data.types import SessionDataset
from rec_gym.recsys.sasrec import SASRec, SASRecConfig, left_padded
from rec_gym.recsys.sequences import session_sequences
from rec_gym.storage import atomic_path, write_json_atomic

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "rec_gym-sasrec-v1"


class PopularityRecommender:
    """Scores an item by how often it occurs in what the recommenders learn from: the training sessions
    (history and target) and the other sessions' histories (see :func:`~rec_gym.recsys.sequences.training_sequences`;
    ``sessions=``: the same sessions with longer histories, as SASRec's training reads them).

    Ties (items seen equally often, most of a long-tail catalog) are broken by a fixed seeded order,
    so the ranking is deterministic and no item gains from its catalog position.
    """

    name = "popularity"

    def __init__(self, dataset: SessionDataset, seed: int = 0, sessions: SessionDataset | None = None) -> None:
        items = np.concatenate([np.zeros(0, dtype=np.int64), *session_sequences(dataset, sessions)]).astype(np.int64)
        counts = np.bincount(items, minlength=len(dataset.catalog)).astype(np.float64)
        jitter = np.random.default_rng(seed).random(len(dataset.catalog)) * 0.5
        self.item_scores = (counts + jitter).astype(np.float32)

    def scores(self, histories: Sequence[np.ndarray], texts: np.ndarray | None = None) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(histories), self.item_scores.size)).copy()


class SASRecRecommender:
    """A trained :class:`~rec_gym.recsys.sasrec.SASRec` and what it was trained with.

    Attributes:
        model: the network, in eval mode, on the CPU.
        config: its :class:`SASRecConfig`.
        info: the ``config.json`` record: dataset name and fingerprint, ``encoder`` (the text encoder
            spec of a knowledge-augmented model, else ``None``), training arguments, metrics.
    """

    def __init__(self, model: SASRec, info: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.info = dict(info or {})

    @property
    def name(self) -> str:
        return "sasrec-ka" if self.config.knowledge else "sasrec"

    @property
    def encoder(self) -> str | None:
        return self.info.get("encoder")

    @torch.no_grad()
    def scores(self, histories: Sequence[np.ndarray], texts: np.ndarray | None = None,
               batch_size: int = 512) -> np.ndarray:
        """float32 ``(len(histories), n_items)``; ``texts`` float32 ``(n, text_dim)``, NaN rows = no text."""
        if texts is not None and not self.config.knowledge:
            raise ValueError("this SASRec was trained without preference texts (text_dim=0); pass texts=None or "
                             "train a knowledge-augmented model (train-recsys --knowledge)")
        out = np.empty((len(histories), self.config.n_items), dtype=np.float32)
        items = self.model.item_vectors()
        for start in range(0, len(histories), batch_size):
            stop = min(start + batch_size, len(histories))
            tokens = torch.from_numpy(left_padded(list(histories[start:stop]), self.config.max_len))
            text = has = None
            if texts is not None:
                block = np.asarray(texts[start:stop], dtype=np.float32)
                has_np = ~np.isnan(block).any(axis=1)
                text, has = torch.from_numpy(np.nan_to_num(block)), torch.from_numpy(has_np)
            hidden = self.model(tokens, text, has)[:, -1]
            out[start:stop] = (hidden @ items.T).numpy()
        return out

    def weights_hash(self) -> str:
        """SHA-256 (16 hex) of the weights: names the model in score tables' provenance."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode("utf-8"))
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``out/model.safetensors`` and ``out/config.json``; returns ``out``."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        write_json_atomic(out / CONFIG_FILE, {**self.info, "format": FORMAT, "model": self.config.to_dict(),
                                               "weights_sha256_16": self.weights_hash()})
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SASRecRecommender":
        """Read a folder written by :meth:`save` (no pickle: safetensors and JSON)."""
        from safetensors.torch import load_file

        path = Path(path)
        config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"{path} is not a trained recommender: expected {CONFIG_FILE} and {WEIGHTS_FILE} "
                                    "(written by `rec-gym train-recsys --out ...`)")
        info = json.loads(config_path.read_text(encoding="utf-8"))
        if info.get("format") != FORMAT:
            raise ValueError(f"{config_path}: format {info.get('format')!r} is not {FORMAT!r}; retrain with "
                             "`rec-gym train-recsys`")
        model = SASRec(SASRecConfig(**info.pop("model")))
        model.load_state_dict(load_file(str(weights_path)))
        return cls(model, info)


def candidate_ranks(scores: np.ndarray, dataset: SessionDataset, rows: np.ndarray) -> np.ndarray:
    """int64 ``(len(rows),)``: 1-based rank of each session's target among its candidates by ``scores``.

    ``scores`` is float ``(len(rows), n_items)``. A candidate tied with the target ranks above it when
    it comes earlier in the (shuffled) candidate order, so ties are broken the same way everywhere.
    """
    ranks = np.empty(len(rows), dtype=np.int64)
    for k, row in enumerate(rows):
        cand = dataset.candidates_of(int(row))
        s = scores[k, cand]
        pos = int(dataset.target_pos[row])
        ranks[k] = 1 + int(np.sum(s > s[pos])) + int(np.sum(s[:pos] == s[pos]))
    return ranks


def catalog_ranks(scores: np.ndarray, dataset: SessionDataset, rows: np.ndarray) -> np.ndarray:
    """int64 ``(len(rows),)``: 1-based rank of each target among all catalog items, the session's own
    history items excluded (a next item is a new item in these datasets)."""
    ranks = np.empty(len(rows), dtype=np.int64)
    for k, row in enumerate(rows):
        s = scores[k].astype(np.float64)
        s[dataset.history_of(int(row))] = -np.inf
        target = int(dataset.target[row])
        ranks[k] = 1 + int(np.sum(s > s[target])) + int(np.sum(s[:target] == s[target]))
    return ranks
