"""SASRec against popularity on the real datasets beside the project (../shared/data), test split.

Run from the project root:

    python benchmarks/rlrf4rec/sasrec_vs_popularity.py

Writes benchmarks/rlrf4rec/sasrec_vs_popularity.md and .json next to this script. Same splits and
50-candidate sets as the environments (seed 0); HR@10 and NDCG@10 among the candidates and among all
catalog items (history excluded). Training takes one CPU thread.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from rec_gym.data import load_dataset
from rec_gym.recsys import PopularityRecommender, SASRecConfig, evaluate_recommender, train_sasrec

DATA = Path(os.environ.get("REC_GYM_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
DATASETS = {"ml-latest-small": DATA / "ml-latest-small", "steam": DATA / "steam-sessions"}
MODEL = dict(dim=64, n_blocks=2, n_heads=1, dropout=0.5, max_len=20)
TRAINING = dict(epochs=80, batch_size=128, lr=2e-3, seed=0, threads=1)
OUT = Path(__file__).resolve().parent / "sasrec_vs_popularity"

results = {}
for name, folder in DATASETS.items():
    dataset = load_dataset(name, folder)
    popularity = evaluate_recommender(PopularityRecommender(dataset), dataset, "test")
    started = time.time()
    model = train_sasrec(dataset, SASRecConfig(n_items=len(dataset.catalog), **MODEL), **TRAINING)
    seconds = time.time() - started
    results[name] = {"popularity": popularity, "sasrec": evaluate_recommender(model, dataset, "test"),
                     "sasrec_val": evaluate_recommender(model, dataset, "val"), "train_seconds": round(seconds, 1),
                     "train_sequences": model.info["training"]["train_sessions"], "items": len(dataset.catalog)}
    print(name, json.dumps(results[name], indent=1), file=sys.stderr)

command = "python benchmarks/rlrf4rec/sasrec_vs_popularity.py"
meta = {"command": command, "model": MODEL, "training": TRAINING, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine()}
OUT.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
lines = ["# SASRec vs popularity (test split, seed 0)", "", f"Command: `{command}`", "",
         f"Model: {MODEL}; training: {TRAINING}.", "",
         "| dataset | recommender | HR@10 cand. | NDCG@10 cand. | HR@10 all | NDCG@10 all | sessions |",
         "|---|---|---|---|---|---|---|"]
for name, r in results.items():
    for label in ("popularity", "sasrec"):
        m = r[label]
        lines.append(f"| {name} | {label} | {m['HR@10 candidates']:.3f} | {m['NDCG@10 candidates']:.3f} | "
                     f"{m['HR@10 all']:.3f} | {m['NDCG@10 all']:.3f} | {m['sessions']} |")
lines += ["", "Training seconds: " + ", ".join(f"{n} {r['train_seconds']} s ({r['train_sequences']} sequences, "
                                                 f"{r['items']} items)" for n, r in results.items())]
OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
