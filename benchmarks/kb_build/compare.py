"""Is a knowledge base the LLM built from its own mistakes worth building? (simulated backend)

For the synthetic env and for ml-latest-small, four knowledge bases of the same size K:

- built:   `build_knowledge_base` on the train split (reflection, validation, LLM de-duplication, support);
- default: the shipped hand-written hints of the domain (its first K);
- random:  K strings of random letters (no meaning at all);
- generic: K prompt-engineering hints ("Think step by step.", ...).

Each is scored on the test split as no hint, best fixed hint (chosen on train), oracle hint (per-session
best, an upper bound) and PPO (small budget, a few seeds; the seed with the best val NDCG@10 is the
"best RL policy", the mean over seeds is shown too), with the LLM calls each KB cost: its build (distinct
requests from an empty cache) and its feedback tables (K hints x the sessions of the three splits).

Run from the project root (a few minutes on 2 CPU cores):

    python benchmarks/kb_build/compare.py

Writes benchmarks/kb_build/results.md, results.json and the KBs under benchmarks/kb_build/kbs/.
The simulated backend is a documented stand-in, not an LLM: these numbers test the pipeline, they say
nothing about what a real model would write.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rec_gym.agents.baselines import BestFixedHint, NoHint, Oracle
from rec_gym.agents.evaluation import evaluate
from rec_gym.agents.tasks import make_env
from rec_gym.agents.training import train
from rec_gym.knowledge.base import KnowledgeBase, load_knowledge_base
from rec_gym.knowledge.build import STAGES, build_knowledge_base
from rec_gym.envs.arguments import load_env_dataset
from rec_gym.llm.simulated import SimulatedLLM

# ---- config ----
HERE = Path(__file__).resolve().parent
ENVS = [
    ("Synthetic", "Re2LLM-Synthetic-v0", {"n_train": 500}),
    ("ml-latest-small", "Re2LLM-ML1M-v0", {"dataset": "ml-latest-small", "data_dir": "../shared/data/ml-latest-small",
                                           "llm": "simulated", "n_train": 500, "encoder": "hashing",
                                           "observation": "profile"}),
]
BUILD = {"max_hints": 20, "max_sessions": 500, "dedup": "llm", "support": True, "support_sessions": 32, "seed": 0}
PPO_SEEDS = (0, 1)
PPO_TIMESTEPS = 5000
GENERIC_HINTS = [
    "Think step by step.", "Consider the user's most recent items.", "Read every candidate before answering.",
    "Answer as an expert recommender would.", "Take a deep breath and work on this problem step by step.",
    "Focus on the user's preferences.", "Double-check your list before answering.",
    "Make sure every recommendation is in the candidate set.", "Prefer items that match the user's taste.",
    "Rank the candidates carefully.", "Use all the information in the history.",
    "Consider what similar users enjoyed.", "Avoid recommending items the user has already seen.",
    "Be diverse in your recommendations.", "Think about why the user chose each item.",
    "Consider the order of the user's interactions.", "Weigh each candidate on its merits.",
    "Recommend what the user is most likely to pick next.", "Reason carefully before you answer.",
    "Be accurate and concise.",
]


def random_hints(k: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return [" ".join("".join(rng.choice(letters, int(rng.integers(3, 9)))) for _ in range(int(rng.integers(5, 10)))).capitalize()
            + "." for _ in range(k)]


def score(env_id: str, kwargs: dict) -> dict:
    """Test NDCG@10 of no hint, best fixed hint, oracle and PPO for one env and KB."""
    row = {"no hint": evaluate(NoHint(), env_id, "test", kwargs)["NDCG@10"],
           "best fixed hint": evaluate(BestFixedHint.fit(env_id, kwargs), env_id, "test", kwargs)["NDCG@10"],
           "oracle": evaluate(Oracle(), env_id, "test", kwargs)["NDCG@10"]}
    runs = []
    for seed in PPO_SEEDS:
        result = train("ppo", env_id, kwargs, seed=seed, timesteps=PPO_TIMESTEPS, out_dir=None, tensorboard=False)
        runs.append((evaluate(result.policy, env_id, "val", kwargs)["NDCG@10"],
                     evaluate(result.policy, env_id, "test", kwargs)["NDCG@10"]))
    row["PPO (best val seed)"] = max(runs)[1]
    row["PPO (mean over seeds)"] = float(np.mean([t for _, t in runs]))
    return row


def table_prompts(env_id: str, kwargs: dict, k: int) -> int:
    total = 0
    for split in ("train", "val", "test"):
        env = make_env(env_id, split, kwargs)
        total += k * env.unwrapped.task.n_sessions
        env.close()
    return total


def main() -> None:
    torch.set_num_threads(1)
    started = time.time()
    (HERE / "kbs").mkdir(exist_ok=True)
    results = {}
    for label, env_id, kwargs in ENVS:
        dataset = load_env_dataset({**kwargs})
        report = build_knowledge_base(dataset, SimulatedLLM(), name=f"built-{label}", progress=False, **BUILD)
        print(f"{label}:\n{report.summary()}", flush=True)
        k = len(report.kb)
        kbs = {"built": report.kb,
               "default": KnowledgeBase(list(load_knowledge_base("default", dataset.domain))[:k], name=f"default-{label}"),
               "random strings": KnowledgeBase(random_hints(k), name=f"random-{label}"),
               "generic": KnowledgeBase(GENERIC_HINTS[:k], name=f"generic-{label}")}
        results[label] = {"K": k, "env_id": env_id, "kwargs": kwargs, "build_counts": report.counts, "kbs": {}}
        for name, kb in kbs.items():
            path = HERE / "kbs" / f"{label}-{name.replace(' ', '-')}.json"
            kb.save(path)
            env_kwargs = {**kwargs, "kb": str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)}
            row = score(env_id, env_kwargs)
            row["build calls"] = sum(report.cost.values()) if name == "built" else 0
            row["table prompts"] = table_prompts(env_id, env_kwargs, k)
            results[label]["kbs"][name] = row
            print(label, name, {key: round(v, 4) for key, v in row.items()}, flush=True)
        results[label]["build_calls_per_stage"] = {s: report.cost[s] for s in STAGES}
    seconds = time.time() - started
    (HERE / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    lines = ["# Built knowledge base vs default, random strings and generic hints (simulated backend)", "",
             "Test NDCG@10. K = the built KB's size; the other KBs take K hints too. Best fixed hint chosen on train; "
             "oracle = per-session best hint (an upper bound); PPO with "
             f"{PPO_TIMESTEPS} steps and seeds {list(PPO_SEEDS)}, the best val seed's test score and the mean over seeds. "
             "Build calls: distinct LLM requests of reflective exploration from an empty cache; table prompts: "
             "K hints x the sessions of train, val and test (the no-hint column is shared by all KBs).", ""]
    for label, info in results.items():
        lines += [f"## {label} (`{info['env_id']}`, K = {info['K']})", "",
                  "| KB | no hint | best fixed hint | oracle | PPO (best val seed) | PPO (mean over seeds) | build calls "
                  "| table prompts |", "|---|---|---|---|---|---|---|---|"]
        for name, row in info["kbs"].items():
            lines.append(f"| {name} | {row['no hint']:.3f} | {row['best fixed hint']:.3f} | {row['oracle']:.3f} | "
                         f"{row['PPO (best val seed)']:.3f} | {row['PPO (mean over seeds)']:.3f} | {row['build calls']} | "
                         f"{row['table prompts']} |")
        calls = info["build_calls_per_stage"]
        counts = info["build_counts"]
        lines += ["", "Build: " + ", ".join(f"{s} {calls[s]}" for s in STAGES) + f" LLM calls; {counts['sessions_answered']} "
                  f"training sessions answered, {counts['error_sessions']} error sessions, {counts['hints_extracted']} hints "
                  f"extracted, {counts['leaked']} leaking, {counts['failed_validation']} failed validation, "
                  f"{counts['duplicates']} duplicates, {counts['support_dropped']} dropped by support.", ""]
    lines += ["## Command", "", "    python benchmarks/kb_build/compare.py", "",
              f"{seconds:.0f} s on {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
              f"torch {torch.__version__}, numpy {np.__version__} (one torch thread).", ""]
    (HERE / "results.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'results.md'} in {seconds:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
