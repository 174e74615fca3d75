"""What a retrieval policy can reach on Re2LLM-Synthetic-v0: fixed hints, the oracle, and a policy told each session's preference.

    python benchmarks/synthetic_ceiling.py      # writes benchmarks/synthetic_ceiling.txt

Every synthetic session is driven by one hidden preference (genre, era, creator, niche, franchise,
last_item, popular; see ``rec_gym.data.synthetic``), kept in its ``session_id`` but not in the
observation. The "preference known" policy picks, for each preference, the hint with the best mean
NDCG@10 on the train split, and applies it to every test session of that preference: the best a
policy can do if it recognised the preference perfectly and knew nothing else. Its distance to the
oracle is per-session noise of the LLM that no observation of the history predicts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("REC_GYM_CACHE", str(Path(tempfile.gettempdir()) / "rec_gym_bench_cache"))

from rec_gym.envs.task import Re2LLMTask  # noqa: E402

OUT = Path(__file__).with_suffix(".txt")


def ndcg_table(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(NDCG@10 of every (session, action), preference of every session)`` of one split."""
    task = Re2LLMTask(dataset="synthetic", llm="simulated", encoder="hashing", observation="profile", split=split)
    task.fill_all(progress=False)
    ranks = task.rank(np.arange(task.n_sessions)[:, None], np.arange(task.n_actions)[None, :])
    preferences = np.array([task.session_id(i).rsplit("-", 1)[0] for i in range(task.n_sessions)])
    return task.ndcg_of_rank[ranks], preferences


def main() -> None:
    train, train_pref = ndcg_table("train")
    test, test_pref = ndcg_table("test")
    best_fixed = int(train.mean(axis=0).argmax())
    best_for = {p: int(train[train_pref == p].mean(axis=0).argmax()) for p in sorted(set(train_pref))}
    known = np.array([test[i, best_for[p]] for i, p in enumerate(test_pref)])
    fixed, oracle = test[:, best_fixed].mean(), test.max(axis=1).mean()
    lines = [f"Re2LLM-Synthetic-v0, test split ({len(test)} sessions), NDCG@10",
             f"  {'no hint':28s} {test[:, 0].mean():.3f}",
             f"  {f'best fixed hint (action {best_fixed})':28s} {fixed:.3f}",
             f"  {'preference known':28s} {known.mean():.3f}   closes {(known.mean() - fixed) / (oracle - fixed):.0%} of the gap",
             f"  {'oracle':28s} {oracle:.3f}",
             "  half-way (the benchmark's target for an RL policy): "
             f"{fixed + (oracle - fixed) / 2:.3f}",
             "",
             "per preference: sessions, its best hint (action, chosen on train), test NDCG@10 with it, best fixed, oracle"]
    for p, action in best_for.items():
        rows = test_pref == p
        lines.append(f"  {p:10s} {rows.sum():4d}  action {action:2d}  {test[rows, action].mean():.3f}  "
                     f"{test[rows, best_fixed].mean():.3f}  {test[rows].max(axis=1).mean():.3f}")
    text = "\n".join(lines) + "\n"
    OUT.write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
