"""Training SASRec on a dataset's training sessions, and evaluating any recommender on a split.

Training sequences are the training split's sessions, history then target, and the validation and
test sessions' histories without their targets (:func:`training_sequences`). The envs keep the last
20 history items of a session; training can read longer histories (``sessions=``: the same sessions
loaded with a larger ``max_history``), which on MovieLens day-sessions triples what it learns from.
A sequence longer than the model's ``max_len`` is cut into windows (:func:`training_windows`), so
every next-item transition is predicted once.

Each position predicts the next item. The default loss is a sampled softmax: the true next item
against ``negatives`` items drawn uniformly from the catalog per batch (shared by its positions), with
cross-entropy; ``loss="bce"`` is SASRec's original binary cross-entropy against one negative per
position. The knowledge-augmented model also reads, per session and per epoch, one of that session's
preference texts (embedded by the frozen encoder beforehand), or none with probability
``text_dropout``, so that it also scores sessions without a text.

Evaluation uses the splits and candidate sets the environments use: HR@10 and NDCG@10 of the
target among the session's candidates, and among all catalog items (history items excluded).
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from rec_gym.data.types import SessionDataset
from rec_gym.metrics import hit_at_k, ndcg_at_k
from rec_gym.recsys.model import SASRecRecommender, candidate_ranks, catalog_ranks
from rec_gym.recsys.sasrec import SASRec, SASRecConfig, left_padded
from rec_gym.recsys.sequences import training_sequences, training_windows

TOP_K = 10


LOSSES = ("sampled-softmax", "bce")


def _negatives(positives: np.ndarray, sequences: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Tokens (index + 1) drawn uniformly from the catalog, redrawn where they hit the row's own items."""
    neg = rng.integers(1, n_items + 1, size=positives.shape)
    for _ in range(3):
        clash = (neg[:, :, None] == sequences[:, None, :]).any(-1) & (positives > 0)
        if not clash.any():
            break
        neg[clash] = rng.integers(1, n_items + 1, size=int(clash.sum()))
    return neg


def train_sasrec(dataset: SessionDataset, config: SASRecConfig | None = None, *, epochs: int = 200,
                 batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
                 sessions: SessionDataset | None = None, loss: str = "sampled-softmax", negatives: int = 256,
                 texts: Mapping[int, np.ndarray] | None = None, encoder: str | None = None, text_dropout: float = 0.3,
                 item_texts: np.ndarray | None = None,
                 threads: int = 1, validate_every: int = 0, progress: bool = True) -> SASRecRecommender:
    """Train SASRec on the training split of ``dataset``.

    Args:
        config: the model's shape (default: ``SASRecConfig(n_items=len(catalog))``, plus ``text_dim``
            from ``texts``).
        epochs: passes over the training sequences.
        sessions: the same sessions with longer histories, read for training (see
            :func:`training_sequences`); ``None`` reads ``dataset``'s.
        loss: ``"sampled-softmax"`` (cross-entropy of the next item against ``negatives`` uniformly drawn
            items per batch) or ``"bce"`` (SASRec's binary cross-entropy against one negative per position).
        negatives: sampled items per batch for ``"sampled-softmax"``, at most the catalog's size (larger
            values use the catalog's size).
        texts: knowledge augmentation: dataset row -> float32 ``(k, text_dim)``, the embeddings of that
            session's ``k`` preference texts (rows missing here train without a text).
        encoder: the encoder spec that embedded ``texts``; recorded so scoring embeds new texts the same way.
        text_dropout: probability that a session is shown no text in an epoch.
        item_texts: float32 ``(n_items, text_dim)``, every item's own text embedded by ``encoder``
            (:func:`~rec_gym.data.embeddings.item_embeddings`): items get text-side knowledge and the
            preference text is matched against it (see :mod:`rec_gym.recsys.sasrec`). Needs ``texts``.
        threads: torch CPU threads (training is small; more threads rarely help).
        validate_every: when > 0, measure NDCG@10 among the candidates of the validation sessions (without
            texts) every this many epochs and keep the weights of the best measurement (early stopping, as
            in SASRec's own protocol); the curve is recorded in ``info["training"]["validation"]``.
        progress: show a progress bar over epochs.

    Returns the trained recommender, in eval mode. Seeded: the same arguments give the same weights.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not one of {LOSSES}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if loss == "sampled-softmax" and int(negatives) < 1:
        raise ValueError(f"negatives must be >= 1 for the sampled softmax, got {negatives}")
    negatives = min(int(negatives), len(dataset.catalog))  # more draws than items only repeat them
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    text_dim = 0
    if texts:
        text_dim = int(next(iter(texts.values())).shape[1])
    if item_texts is not None and not text_dim:
        raise ValueError("item_texts needs preference texts (texts=...): items and texts are matched by one encoder")
    if config is None:
        config = SASRecConfig(n_items=len(dataset.catalog), text_dim=text_dim,
                              item_text_dim=text_dim if item_texts is not None else 0)
    if (item_texts is not None) != config.item_text:
        raise ValueError(f"config.item_text_dim={config.item_text_dim} but item_texts is "
                         f"{'given' if item_texts is not None else 'None'}; give both or neither")
    if config.n_items != len(dataset.catalog):
        raise ValueError(f"config.n_items={config.n_items} but the catalog of {dataset.name!r} has {len(dataset.catalog)} items")
    if texts and config.text_dim != text_dim:
        raise ValueError(f"config.text_dim={config.text_dim} but the texts are {text_dim}-d")
    session_rows, full = training_sequences(dataset, sessions)
    rows, sequences = training_windows(session_rows, full, config.max_len)
    tokens = left_padded(sequences, config.max_len + 1)  # inputs are [:-1], next items [1:]
    inputs, positives = torch.from_numpy(tokens[:, :-1]), torch.from_numpy(tokens[:, 1:])
    model = SASRec(config)
    if item_texts is not None:
        model.set_item_text(item_texts)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    started = time.time()
    history: list[float] = []
    validation: list[tuple[int, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    bar = tqdm(range(epochs), desc=f"training {config.knowledge and 'knowledge-augmented ' or ''}SASRec on {dataset.name}",
               unit="epoch", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        model.train()
        for _ in bar:
            order = rng.permutation(len(rows))
            total, count = 0.0, 0
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                x, pos = inputs[batch], positives[batch]
                text = has = None
                if config.knowledge:
                    text, has = _text_batch(rows[batch], texts or {}, config.text_dim, text_dropout, rng)
                mask = pos > 0
                hidden = model(x, text, has)[mask]
                if loss == "bce":
                    neg = torch.from_numpy(_negatives(pos.numpy(), tokens[batch], config.n_items, rng))[mask]
                    batch_loss = _bce(hidden, model.item_vectors(pos[mask]), model.item_vectors(neg))
                else:
                    neg = torch.from_numpy(rng.integers(1, config.n_items + 1, size=int(negatives)))
                    batch_loss = _sampled_softmax(hidden, pos[mask], neg, model.item_vectors)
                n = int(mask.sum())
                optimizer.zero_grad()
                (batch_loss / max(n, 1)).backward()
                optimizer.step()
                total, count = total + float(batch_loss.detach()), count + n
            history.append(total / max(count, 1))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            epoch = len(history)
            if validate_every > 0 and (epoch % validate_every == 0 or epoch == epochs):
                score = evaluate_recommender(SASRecRecommender(model), dataset, "val")["NDCG@10 candidates"]
                model.train()
                if not validation or score > max(v for _, v in validation):
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                validation.append((epoch, score))
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
    if best_state is not None:
        model.load_state_dict(best_state)
    info = {"dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint, "encoder": encoder if text_dim else None,
            "training": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
                         "loss": loss, "negatives": int(negatives) if loss == "sampled-softmax" else 1,
                         "longest_sequence": int(max(len(s) for s in full)) if full else 0,
                         "windows": len(sequences), "transitions": int(sum(len(s) - 1 for s in sequences)),
                         "text_dropout": text_dropout if text_dim else None, "train_sessions": len(rows),
                         "seconds": round(time.time() - started, 1), "final_loss": history[-1] if history else None,
                         "validation": [{"epoch": e, "val_ndcg10_candidates": v} for e, v in validation],
                         "best_epoch": max(validation, key=lambda ev: ev[1])[0] if validation else epochs}}
    return SASRecRecommender(model, info)


def check_training_kwargs(training: Mapping[str, Any], train_history: int) -> None:
    """Refuse ``recsys_training`` keys that :func:`train_sasrec` does not take, and a ``train_history`` below 1,
    before any work is done."""
    known = set(inspect.signature(train_sasrec).parameters) - {"dataset", "config", "sessions", "texts", "encoder", "progress",
                                                               "item_texts"}
    unknown = sorted(set(training) - known)
    if unknown:
        raise ValueError(f"recsys_training: unknown key(s) {unknown}; known: {sorted(known | {'train_history'})}")
    if int(train_history) < 1:
        raise ValueError(f"recsys_training: train_history must be >= 1, got {train_history}")
    if "epochs" in training and int(training["epochs"]) < 1:
        raise ValueError(f"recsys_training: epochs must be >= 1, got {training['epochs']}")


def _bce(hidden: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Summed binary cross-entropy: each position's next item against its one negative (all ``(m, dim)``)."""
    pos_logit, neg_logit = (hidden * positive).sum(-1), (hidden * negative).sum(-1)
    fn = torch.nn.functional.binary_cross_entropy_with_logits
    return fn(pos_logit, torch.ones_like(pos_logit), reduction="sum") + \
        fn(neg_logit, torch.zeros_like(neg_logit), reduction="sum")


def _sampled_softmax(hidden: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                     embed: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy of each position's next item (tokens ``(m,)``) against shared negatives ``(k,)``.

    A negative that is the position's own next item is masked out, so it never counts against itself.
    """
    pos_logit = (hidden * embed(positive)).sum(-1, keepdim=True)
    neg_logit = (hidden @ embed(negatives).T).masked_fill(negatives.unsqueeze(0) == positive.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long), reduction="sum")


def _text_batch(rows: np.ndarray, texts: Mapping[int, np.ndarray], text_dim: int, dropout: float,
                rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    out = np.zeros((len(rows), text_dim), dtype=np.float32)
    has = np.zeros(len(rows), dtype=bool)
    for k, row in enumerate(rows):
        options = texts.get(int(row))
        if options is not None and len(options) and rng.random() >= dropout:
            out[k] = options[rng.integers(len(options))]
            has[k] = True
    return torch.from_numpy(out), torch.from_numpy(has)


def evaluate_recommender(recommender: Any, dataset: SessionDataset, split: str = "test",
                         texts: np.ndarray | None = None) -> dict[str, float]:
    """HR@10 and NDCG@10 of ``recommender`` on the sessions of ``split``.

    Args:
        recommender: anything with ``scores(histories, texts) -> (n, n_items)``.
        texts: float32 ``(n_sessions_of_split, text_dim)`` text embeddings (NaN rows: no text), for a
            knowledge-augmented model.

    Returns ``{"HR@10 candidates", "NDCG@10 candidates", "HR@10 all", "NDCG@10 all", "sessions"}``.
    """
    rows = dataset.indices(split)
    scores = recommender.scores([dataset.history_of(int(r)) for r in rows], texts)
    cand, full = candidate_ranks(scores, dataset, rows), catalog_ranks(scores, dataset, rows)
    return {"HR@10 candidates": float(np.mean(hit_at_k(cand, TOP_K))),
            "NDCG@10 candidates": float(np.mean(ndcg_at_k(cand, TOP_K))),
            "HR@10 all": float(np.mean(hit_at_k(full, TOP_K))), "NDCG@10 all": float(np.mean(ndcg_at_k(full, TOP_K))),
            "sessions": int(len(rows))}
