"""Does a preference text reach the items? Plain SASRec against the knowledge-augmented SASRec whose items carry
their own texts (KAR-style matching), read with no text and with each kind of simulated text, on the test split.

Run from the project root (the real datasets in ../shared/data beside the project, or $REC_GYM_SHARED_DATA):

    python benchmarks/rlrf4rec/knowledge.py [dataset ...]

Writes knowledge.md and .json next to this script (one entry per dataset; a run for some datasets keeps the
others' entries). Same splits and 50-candidate sets as the environments (dataset seed 0); NDCG@10 among the
candidates. Both models have the same shape and training (seed 0, sampled softmax, early stopping on
validation NDCG@10, up to TRAIN_HISTORY history items per session); the knowledge-augmented one also reads,
per training session and epoch, one of N_TEXTS simulated preference texts (rec_gym.llm.simulated_preferences,
default fidelity), and every item's own text (title and metadata) embedded by the same encoder.

At test time each session is read with no text, and with one text of each kind the simulated writer writes
(faithful, unhelpful, wrong: every text of that kind among TEST_SAMPLES samples at temperature 1, judged by
rec_gym.llm.simulated_preferences.text_kind, the session's figure being their mean NDCG@10, so that no one
text's luck decides it); sessions that lack a kind among their samples are left out of every row (their count is reported), so all rows are paired. Differences against "no text" get 95% paired
bootstrap intervals (rec_gym.agents.statistics.paired_difference_ci).
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
from rec_gym.data.embeddings import item_embeddings
from rec_gym.llm import make_llm
from rec_gym.llm.simulated_preferences import text_kind
from rec_gym.metrics import ndcg_at_k
from rec_gym.recsys import SASRecConfig, train_sasrec
from rec_gym.recsys.model import candidate_ranks
from rec_gym.recsys.preferences import embed_texts, generate_preferences, session_latent
from rec_gym.recsys.sequences import load_training_sessions

DATA = Path(os.environ.get("REC_GYM_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
DATASETS = {"synthetic": None, "ml-latest-small": DATA / "ml-latest-small", "steam": DATA / "steam-sessions"}
# The synthetic world's item texts are generated words: the hashing encoder (its envs' default) reads them.
ENCODERS = {"synthetic": "hashing", "ml-latest-small": "minilm", "steam": "minilm"}
MODEL = dict(dim=64, n_blocks=2, n_heads=1, dropout=0.5, max_len=20)
TRAINING = dict(epochs=20, batch_size=128, lr=2e-3, seed=0, threads=1, validate_every=5, loss="sampled-softmax",
                negatives=256)
TRAIN_HISTORY = 1000
N_TEXTS = 5
TEST_SAMPLES = 50
KINDS = ("faithful", "unhelpful", "wrong")
BOOTSTRAP = 10_000
OUT = Path(__file__).resolve().parent / "knowledge"
torch.set_num_threads(1)


def used_items(*datasets) -> np.ndarray:
    """Catalog indices that occur in some session (history, target or candidate): the only ones ever scored."""
    parts = [np.concatenate([d.history.ravel(), d.target.ravel(), d.candidates.ravel()]) for d in datasets]
    items = np.unique(np.concatenate(parts))
    return items[items >= 0]


def texts_of_each_kind(writer, dataset, rows) -> dict[str, list[list[str]]]:
    """For each kind, every sampled text of that kind per session (an empty list where none was sampled)."""
    sampled = generate_preferences(writer, dataset, rows, n=TEST_SAMPLES, temperature=1.0)
    out: dict[str, list[list[str]]] = {kind: [] for kind in KINDS}
    for row, texts in zip(rows, sampled):
        history, latent = dataset.session_items(int(row))[0], session_latent(dataset, int(row))
        kinds = [text_kind(t, history, dataset.domain, latent) for t in texts]
        for kind in KINDS:
            out[kind].append([t for t, k in zip(texts, kinds) if k == kind])
    return out


def run(name: str, folder: Path | None) -> dict:
    encoder = ENCODERS[name]
    dataset = load_dataset(name, folder)
    sessions = load_training_sessions(name, folder, max_history=TRAIN_HISTORY)
    writer = make_llm("simulated")
    train_rows, test_rows = dataset.indices("train"), dataset.indices("test")
    replies = generate_preferences(writer, dataset, train_rows, n=N_TEXTS, temperature=1.0)
    flat = embed_texts([t for r in replies for t in r], encoder, progress=True)
    texts = {int(r): flat[k * N_TEXTS:(k + 1) * N_TEXTS] for k, r in enumerate(train_rows)}
    item_texts = item_embeddings(dataset.catalog, encoder, dataset=name, items=used_items(dataset, sessions))
    started = time.time()
    plain = train_sasrec(dataset, SASRecConfig(n_items=len(dataset.catalog), **MODEL), sessions=sessions, **TRAINING)
    kar = train_sasrec(dataset, SASRecConfig(n_items=len(dataset.catalog), text_dim=flat.shape[1],
                                             item_text_dim=flat.shape[1], **MODEL),
                       sessions=sessions, texts=texts, encoder=encoder, item_texts=item_texts, **TRAINING)
    seconds = time.time() - started
    by_kind = texts_of_each_kind(writer, dataset, test_rows)
    keep = np.array([all(by_kind[k][i] for k in KINDS) for i in range(len(test_rows))])
    rows = test_rows[keep]

    def ndcg(model, text_vectors=None, session_rows=rows) -> np.ndarray:
        session_histories = [dataset.history_of(int(r)) for r in session_rows]
        return np.asarray(ndcg_at_k(candidate_ranks(model.scores(session_histories, text_vectors), dataset,
                                                    session_rows), 10), dtype=np.float64).reshape(-1)

    none = np.full((len(rows), flat.shape[1]), np.nan, dtype=np.float32)
    scores = {"sasrec": ndcg(plain), "ka, no text": ndcg(kar, none)}
    for kind in KINDS:
        # Each session's mean over all its texts of this kind: one text's luck does not decide its figure.
        per_session = [texts for texts, k in zip(by_kind[kind], keep) if k]
        owner = np.repeat(np.arange(len(rows)), [len(texts) for texts in per_session])
        values = ndcg(kar, embed_texts([t for texts in per_session for t in texts], encoder), rows[owner])
        scores[f"ka, {kind} text"] = np.bincount(owner, values) / np.bincount(owner)
    base = scores["ka, no text"]
    result = {"encoder": encoder, "test_sessions": int(len(test_rows)), "sessions_with_every_kind": int(keep.sum()),
              "training_seconds": round(seconds, 1), "best_epoch": {"sasrec": plain.info["training"]["best_epoch"],
                                                                    "ka": kar.info["training"]["best_epoch"]},
              "ndcg10": {k: float(v.mean()) for k, v in scores.items()}, "minus_no_text": {}}
    for label, values in scores.items():
        if label != "ka, no text":
            mean, low, high = paired_difference_ci(values.reshape(1, -1), base.reshape(1, -1), reps=BOOTSTRAP)
            result["minus_no_text"][label] = {"mean": mean, "low": low, "high": high}
    print(name, json.dumps(result, indent=1), file=sys.stderr)
    return result


names = sys.argv[1:] or list(DATASETS)
unknown = sorted(set(names) - set(DATASETS))
if unknown:
    sys.exit(f"unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
stored = json.loads(OUT.with_suffix(".json").read_text()) if OUT.with_suffix(".json").is_file() else {}
results = dict(stored.get("results", {}))
for name in names:
    results[name] = run(name, DATASETS[name])
command = "python benchmarks/rlrf4rec/knowledge.py"
OUT.with_suffix(".json").write_text(json.dumps({"command": command, "model": MODEL, "training": TRAINING,
                                                "train_history": TRAIN_HISTORY, "n_texts": N_TEXTS,
                                                "test_samples": TEST_SAMPLES, "torch": torch.__version__,
                                                "results": results}, indent=2) + "\n")
lines = ["# Knowledge-augmented SASRec with item texts: each kind of preference text against no text (test split)", "",
         f"Command: `{command}`", "", f"Model: {MODEL}; training: {TRAINING}, on up to {TRAIN_HISTORY} history items per "
         f"session; {N_TEXTS} simulated texts per training session (temperature 1). Test texts: every text of each kind "
         f"among {TEST_SAMPLES} samples, averaged per session; sessions lacking a kind are left out of every row. NDCG@10 among the 50 "
         f"candidates; differences against the same model with no text, 95% paired bootstrap ({BOOTSTRAP} resamples).",
         "", "| dataset | model | NDCG@10 | minus no text | 95% interval | sessions |", "|---|---|---|---|---|---|"]
for name, r in results.items():
    for label, value in r["ndcg10"].items():
        d = r["minus_no_text"].get(label)
        diff = ("", "") if d is None else (f"{d['mean']:+.3f}", f"[{d['low']:+.3f}, {d['high']:+.3f}]")
        lines.append(f"| {name} ({r['encoder']}) | {label} | {value:.3f} | {diff[0]} | {diff[1]} | "
                     f"{r['sessions_with_every_kind']} of {r['test_sessions']} |")
OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
