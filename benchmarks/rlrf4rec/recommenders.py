"""Popularity, SASRec and knowledge-augmented SASRec (simulated preference texts) on the real datasets, test split.

Run from the project root (the datasets in ../shared/data beside the project, or $REC_GYM_SHARED_DATA):

    python benchmarks/rlrf4rec/recommenders.py

Writes recommenders.md and .json next to this script. Same splits and 50-candidate sets as the
environments (dataset seed 0); HR@10 and NDCG@10 among the candidates and among all catalog items
(the session's history excluded). The models learn from the same sessions with up to TRAIN_HISTORY
history items (the envs keep the last 20; MovieLens day-sessions are often far longer), and so does
popularity. SASRec is also trained the earlier way (binary cross-entropy, the envs' 20 items) for
comparison. The gap between SASRec and popularity gets a 95% paired bootstrap interval over the test
sessions. Both SASRec models have the same shape and training (seed 0, sampled softmax, early stopping
on validation NDCG@10); the knowledge-augmented one also reads, per
training session and epoch, one of N_TEXTS simulated preference texts (rec_gym.llm.simulated_preferences)
embedded by the frozen MiniLM encoder. It is evaluated reading no text, the greedy (temperature 0)
text of each test session, a random one of its N_TEXTS sampled texts, and the best of them (an oracle:
the RLRF4Rec env's upper bound).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rec_gym.agents.statistics import paired_difference_ci
from rec_gym.data import load_dataset
from rec_gym.llm import make_llm
from rec_gym.recsys import PopularityRecommender, SASRecConfig, evaluate_recommender, train_sasrec
from rec_gym.recsys.model import candidate_ranks
from rec_gym.recsys.preferences import embed_texts, generate_preferences
from rec_gym.recsys.sequences import load_training_sessions
from rec_gym.metrics import hit_at_k, ndcg_at_k

DATA = Path(os.environ.get("REC_GYM_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
DATASETS = {"ml-latest-small": DATA / "ml-latest-small", "steam": DATA / "steam-sessions"}
MODEL = dict(dim=64, n_blocks=2, n_heads=1, dropout=0.5, max_len=20)
TRAINING = dict(epochs=60, batch_size=128, lr=2e-3, seed=0, threads=1, validate_every=5, loss="sampled-softmax",
                negatives=256)
# The earlier recipe: binary cross-entropy against one negative per position, on the envs' 20 items.
EARLIER = {**{k: v for k, v in TRAINING.items() if k != "negatives"}, "epochs": 80, "loss": "bce"}
TRAIN_HISTORY = 1000
BOOTSTRAP = 10_000
N_TEXTS = 5  # the env's default is 10; 5 keeps the MiniLM encoding to minutes on one CPU thread
TEMPERATURE = 1.0
ENCODER = "minilm"
OUT = Path(__file__).resolve().parent / "recommenders"
torch.set_num_threads(1)


def gap_interval(better: np.ndarray, worse: np.ndarray) -> dict[str, float]:
    """Mean per-session NDCG@10 gain of ``better`` over ``worse`` (candidate ranks), with a 95% paired bootstrap interval."""
    a, b = (np.asarray(ndcg_at_k(r, 10), dtype=np.float64).reshape(1, -1) for r in (better, worse))
    mean, low, high = paired_difference_ci(a, b, reps=BOOTSTRAP)
    return {"mean": mean, "low": low, "high": high, "sessions": int(a.shape[1])}


def metrics(ranks: np.ndarray) -> dict[str, float]:
    return {"HR@10 candidates": float(np.mean(hit_at_k(ranks, 10))),
            "NDCG@10 candidates": float(np.mean(ndcg_at_k(ranks, 10))), "HR@10 all": None, "NDCG@10 all": None}


writer = make_llm("simulated")
results = {}
for name, folder in DATASETS.items():
    dataset = load_dataset(name, folder)
    sessions = load_training_sessions(name, folder, max_history=TRAIN_HISTORY)
    train_rows, test_rows = dataset.indices("train"), dataset.indices("test")
    replies = generate_preferences(writer, dataset, train_rows, n=N_TEXTS, temperature=TEMPERATURE)
    flat = embed_texts([t for r in replies for t in r], ENCODER, progress=True)
    texts = {int(r): flat[k * N_TEXTS:(k + 1) * N_TEXTS] for k, r in enumerate(train_rows)}
    started = time.time()
    plain = train_sasrec(dataset, SASRecConfig(n_items=len(dataset.catalog), **MODEL), sessions=sessions, **TRAINING)
    plain_seconds = time.time() - started
    earlier = train_sasrec(dataset, SASRecConfig(n_items=len(dataset.catalog), **MODEL), **EARLIER)
    popularity = PopularityRecommender(dataset, sessions=sessions)
    started = time.time()
    ka = train_sasrec(dataset, SASRecConfig(n_items=len(dataset.catalog), text_dim=flat.shape[1], **MODEL),
                      sessions=sessions, texts=texts, encoder=ENCODER, **TRAINING)
    ka_seconds = time.time() - started
    histories = [dataset.history_of(int(r)) for r in test_rows]
    greedy = embed_texts([r[0] for r in generate_preferences(writer, dataset, test_rows, n=1, temperature=0.0)], ENCODER)
    sampled = generate_preferences(writer, dataset, test_rows, n=N_TEXTS, temperature=TEMPERATURE)
    sampled_emb = embed_texts([t for r in sampled for t in r], ENCODER).reshape(len(test_rows), N_TEXTS, -1)
    per_text = np.stack([candidate_ranks(ka.scores(histories, sampled_emb[:, j]), dataset, test_rows)
                         for j in range(N_TEXTS)], axis=1)
    best = per_text.min(axis=1)  # ranks among candidates are 1-based, never 0
    none = np.full((len(test_rows), flat.shape[1]), np.nan, dtype=np.float32)
    results[name] = {
        "popularity": evaluate_recommender(popularity, dataset, "test"),
        "sasrec": evaluate_recommender(plain, dataset, "test"),
        "sasrec, bce on the envs' 20 items": evaluate_recommender(earlier, dataset, "test"),
        "ka, no text": evaluate_recommender(ka, dataset, "test", none),
        "ka, greedy text": evaluate_recommender(ka, dataset, "test", greedy),
        "ka, random sampled text": metrics(per_text[np.arange(len(test_rows)), np.random.default_rng(0).integers(
            N_TEXTS, size=len(test_rows))]),
        "ka, best of sampled texts (oracle)": metrics(best),
        "seconds": {"sasrec": round(plain_seconds, 1), "ka": round(ka_seconds, 1)},
        "best_epoch": {"sasrec": plain.info["training"]["best_epoch"], "ka": ka.info["training"]["best_epoch"]},
        "transitions": {"full": plain.info["training"]["transitions"], "envs' 20": earlier.info["training"]["transitions"]},
        "sasrec minus popularity": gap_interval(candidate_ranks(plain.scores(histories), dataset, test_rows),
                                                candidate_ranks(popularity.scores(histories), dataset, test_rows)),
    }
    print(name, json.dumps(results[name], indent=1), file=sys.stderr)

command = "python benchmarks/rlrf4rec/recommenders.py"
OUT.with_suffix(".json").write_text(json.dumps({"command": command, "model": MODEL, "training": TRAINING,
                                                "earlier_training": EARLIER, "train_history": TRAIN_HISTORY,
                                                "n_texts": N_TEXTS, "temperature": TEMPERATURE, "encoder": ENCODER,
                                                "torch": torch.__version__, "results": results}, indent=2) + "\n")
lines = ["# Popularity, SASRec and knowledge-augmented SASRec (simulated preference texts; test split, seed 0)", "",
         f"Command: `{command}`", "", f"Model: {MODEL}; training: {TRAINING}, on up to {TRAIN_HISTORY} history items per session "
         f"(popularity counts the same items); the earlier recipe: {EARLIER}, on the envs' 20. "
         f"{N_TEXTS} texts per training session at temperature {TEMPERATURE}, encoder {ENCODER}.", "",
         "| dataset | model | HR@10 cand. | NDCG@10 cand. | HR@10 all | NDCG@10 all |", "|---|---|---|---|---|---|"]
for name, r in results.items():
    for label, m in r.items():
        if isinstance(m, dict) and "NDCG@10 candidates" in m:
            full = [("-" if m[k] is None else f"{m[k]:.3f}") for k in ("HR@10 all", "NDCG@10 all")]
            lines.append(f"| {name} | {label} | {m['HR@10 candidates']:.3f} | {m['NDCG@10 candidates']:.3f} | "
                         f"{full[0]} | {full[1]} |")
    lines.append(f"| {name} | training seconds | SASRec {r['seconds']['sasrec']} | KA {r['seconds']['ka']} | | |")
lines += ["", "SASRec minus popularity, NDCG@10 among the candidates, per test session (95% paired bootstrap interval, "
          f"{BOOTSTRAP} resamples); next-item transitions learnt from:", "",
          "| dataset | gain | 95% interval | test sessions | transitions (full sessions) | transitions (envs' 20 items) |",
          "|---|---|---|---|---|---|"]
for name, r in results.items():
    g, full, short = r["sasrec minus popularity"], r["transitions"]["full"], r["transitions"]["envs' 20"]
    lines.append(f"| {name} | {g['mean']:+.3f} | [{g['low']:+.3f}, {g['high']:+.3f}] | {g['sessions']} | "
                 f"{full:,} | {short:,} |")
OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
