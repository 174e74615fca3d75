"""The embedding backend's combined mode against its full-text mode, on real sessions.

    python benchmarks/embedding_modes.py       # writes embedding_modes.txt and embedding_modes.json

For the first SESSIONS validation sessions of ml-latest-small and of the Steam sessions (from
``../shared/data``), with the domain's default knowledge base (no hint plus 20 hints), both modes of
``embedding:all-MiniLM-L6-v2`` score every candidate of every (session, prompt) pair:

- ``full``: history titles and hint encoded together, one encoder pass per pair;
- ``combined``: history encoded once per session, each hint once, query = normalise(history + 0.5 * hint).

Reported per dataset: seconds per pair of each mode (process CPU time, the figure a shared machine
cannot take away; item embeddings warmed first, so both pay only for queries); the mean Spearman
correlation of the two modes' candidate scores per pair; how often they put the target at the same
rank and in the top 10 alike; and each mode's mean NDCG@10 per prompt with the rank correlation of
those 21 means (does the combined mode order the hints the way the full mode does?).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from rec_gym.data import load_dataset
from rec_gym.knowledge import load_knowledge_base
from rec_gym.llm import make_llm
from rec_gym.llm.protocol import RankRequest

# ---- config ----
SESSIONS = 60
HINT_WEIGHT = 0.5
DATASETS = {"ml-latest-small": "ml-latest-small", "steam": "steam-sessions"}
HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("REC_GYM_SHARED_DATA", HERE.parent.parent / "shared" / "data"))


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(-x, kind="stable"), kind="stable").astype(float)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def ndcg_at_10(rank: np.ndarray) -> np.ndarray:
    return np.where(rank <= 10, 1.0 / np.log2(rank + 1.0), 0.0)


full = make_llm("embedding:all-MiniLM-L6-v2")
combined = make_llm("embedding:all-MiniLM-L6-v2", mode="combined", hint_weight=HINT_WEIGHT)
report: dict = {}
lines = [f"embedding backend: combined vs full mode  (python {platform.python_version()}, "
         f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus)",
         f"first {SESSIONS} validation sessions per dataset x 21 prompts (no hint + the default KB's 20 hints); "
         f"combined: normalise(history + {HINT_WEIGHT} * hint)", ""]
for name, folder in DATASETS.items():
    dataset = load_dataset(name, SHARED / folder)
    kb = load_knowledge_base("default", dataset.domain)
    hints = [None, *kb.hints]
    rows = dataset.indices("val")[:SESSIONS]
    requests = []
    for row in rows:
        history, candidates = dataset.session_items(int(row))
        base = RankRequest(tuple(history), tuple(candidates), None, dataset.domain)
        requests.append([base.with_hint(h) for h in hints])
    for backend in (full, combined):  # item vectors first, so the timing below is the queries alone
        backend.item_vectors([c for per in requests for c in per[0].candidates])
    scores, seconds = {}, {}
    for label, backend in (("full", full), ("combined", combined)):
        start = time.process_time()
        scores[label] = [backend.scores(per) for per in requests]
        seconds[label] = time.process_time() - start
    pairs = len(rows) * len(hints)
    rho = [spearman(a, b) for fa, fb in zip(scores["full"], scores["combined"]) for a, b in zip(fa, fb)]
    target = dataset.target_pos[rows]
    rank = {label: np.array([[1 + int(np.sum(s > s[t])) for s in per] for per, t in zip(scores[label], target)])
            for label in scores}
    mean_ndcg = {label: ndcg_at_10(rank[label]).mean(axis=0) for label in rank}
    report[name] = {
        "pairs": pairs, "cpu_s_per_pair": {k: v / pairs for k, v in seconds.items()},
        "speedup": seconds["full"] / seconds["combined"], "mean_spearman": float(np.mean(rho)),
        "same_target_rank": float(np.mean(rank["full"] == rank["combined"])),
        "same_top10_membership": float(np.mean((rank["full"] <= 10) == (rank["combined"] <= 10))),
        "mean_ndcg_by_prompt": {k: v.round(4).tolist() for k, v in mean_ndcg.items()},
        "prompt_order_spearman": spearman(mean_ndcg["full"], mean_ndcg["combined"]),
        "mean_ndcg": {k: float(v.mean()) for k, v in mean_ndcg.items()},
    }
    r = report[name]
    lines += [f"{name}: {pairs} pairs",
              f"  CPU per pair: full {r['cpu_s_per_pair']['full'] * 1e3:.1f} ms, combined "
              f"{r['cpu_s_per_pair']['combined'] * 1e3:.2f} ms ({r['speedup']:.0f}x fewer)",
              f"  candidate scores, Spearman per pair (mean): {r['mean_spearman']:.3f}",
              f"  target at the same rank: {r['same_target_rank']:.1%}; in or out of the top 10 alike: "
              f"{r['same_top10_membership']:.1%}",
              f"  mean NDCG@10 over all pairs: full {r['mean_ndcg']['full']:.3f}, combined {r['mean_ndcg']['combined']:.3f}; "
              f"rank correlation of the 21 prompts' means: {r['prompt_order_spearman']:.3f}", ""]

text = "\n".join(lines)
print(text)
(HERE / "embedding_modes.txt").write_text(text)
(HERE / "embedding_modes.json").write_text(json.dumps(report, indent=2) + "\n")
