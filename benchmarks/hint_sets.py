"""Several hints per prompt: the composition env and the team of retrievers against one-hint policies.

For each dataset (simulated LLM), on the same test sessions, NDCG@10 of:

- the one-hint env's PPO (the package's best one-hint policy), its best fixed hint (chosen on train)
  and its oracle hint;
- the composition env (``Re2LLMCompose-*-v0``, ``max_hints``) trained with ``MaskablePPO`` and ``PPO``;
- ``hint_team_v0`` (``n_agents = max_hints``) with one PPO policy shared by the agents, under team
  and under difference rewards;
- the best fixed hint set (chosen on a sample of train sessions) and the per-session oracle set.

Differences are paired over test sessions and seeds (``rec_gym.agents.statistics.paired_difference_ci``).
Each RL run fills its own feedback tables, so their answered entries are the distinct LLM calls the
run needed (training and test). Writes ``results.md``, ``results.json``, ``comparison.png`` and
``command.txt`` into ``--out``.

    python benchmarks/hint_sets.py --out benchmarks/hint_sets
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE.parent.parent / "shared" / "data"
# dataset name -> (one-hint id, composition id, team env kwargs, extra env kwargs)
DATASETS = {
    "synthetic": ("Re2LLM-Synthetic-v0", "Re2LLMCompose-Synthetic-v0", {}),
    "steam": ("Re2LLM-Steam-v0", "Re2LLMCompose-Steam-v0",
              {"dataset": "steam", "encoder": "minilm", "observation": "embedding"}),
}


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    return np.where((ranks >= 1) & (ranks <= 10), 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


def one_hint_ppo(env_id: str, kwargs: dict, seed: int, table_dir: Path, sessions: np.ndarray, timesteps: int | None):
    from rec_gym.agents.evaluation import evaluate
    from rec_gym.agents.training import train

    train_kwargs = {**kwargs, "feedback_table": str(table_dir / "train.npz")}
    result = train("ppo", env_id, train_kwargs, seed=seed, timesteps=timesteps, tensorboard=False)
    test = evaluate(result.policy, env_id, split="test", env_kwargs={**kwargs, "feedback_table": str(table_dir / "test.npz")})
    return test.ranks[sessions]


def compose_run(algo: str, env_id: str, kwargs: dict, seed: int, table_dir: Path, sessions: np.ndarray,
                timesteps: int | None):
    import gymnasium as gym

    from rec_gym.agents.hint_sets import compose_ranks, train_compose

    model = train_compose(env_id, algo, {**kwargs, "feedback_table": str(table_dir / "train.npz")}, seed=seed,
                          timesteps=timesteps)
    env = gym.make(env_id, split="test", **kwargs, feedback_table=str(table_dir / "test.npz"))
    ranks, sizes = compose_ranks(model, env, sessions)
    env.close()
    return ranks, sizes


def team_run(reward_mode: str, kwargs: dict, seed: int, table_dir: Path, sessions: np.ndarray, timesteps: int | None):
    from rec_gym.agents.hint_sets import make_team_env, team_ranks, train_team

    team_kwargs = {**kwargs, "reward_mode": reward_mode}
    model = train_team({**team_kwargs, "feedback_table": str(table_dir / "train.npz")}, seed=seed, timesteps=timesteps)
    env = make_team_env("test", {**team_kwargs, "feedback_table": str(table_dir / "test.npz")})
    ranks, sizes = team_ranks(model, env, sessions)
    env.close()
    return ranks, sizes


def run_dataset(name: str, args: argparse.Namespace, work: Path) -> dict:
    import gymnasium as gym

    from rec_gym.agents.hint_sets import known_entries, set_ranks
    from rec_gym.agents.statistics import paired_difference_ci

    one_id, compose_id, extra = DATASETS[name]
    kwargs = {"llm": "simulated", **({"data_dir": str(args.data_dir)} if name != "synthetic" else {})}
    team_kwargs = {**kwargs, **extra, "n_agents": args.max_hints}
    compose_kwargs = {**kwargs, "max_hints": args.max_hints}
    test_env = gym.make(one_id, split="test", **kwargs)
    train_env = gym.make(one_id, split="train", **kwargs)
    test_task, train_task = test_env.unwrapped.task, train_env.unwrapped.task
    rng = np.random.default_rng(0)
    sessions = np.sort(rng.choice(test_task.n_sessions, min(args.sessions, test_task.n_sessions), replace=False))
    train_sample = np.sort(rng.choice(train_task.n_sessions, min(args.sessions, train_task.n_sessions), replace=False))
    print(f"[{name}] hint-set ranks of {len(sessions)} test and {len(train_sample)} train sessions", flush=True)
    test_sets, columns = set_ranks(test_task, args.max_hints, sessions, progress=True)
    train_sets, _ = set_ranks(train_task, args.max_hints, train_sample, progress=True)
    sizes = np.array([len(c) for c in columns])
    singles = np.flatnonzero(sizes <= 1)
    test_ndcg, train_ndcg = ndcg10(test_sets), ndcg10(train_sets)
    best_set = int(np.argmax(train_ndcg.mean(axis=0)))
    best_hint = int(singles[np.argmax(train_ndcg[:, singles].mean(axis=0))])
    scores: dict[str, dict] = {
        "no hint": {"ndcg": test_ndcg[None, :, 0], "hints": [0.0], "calls": None},
        "best fixed hint (train)": {"ndcg": test_ndcg[None, :, best_hint], "hints": [float(sizes[best_hint])],
                                    "calls": len(train_sample) * len(singles)},
        "oracle hint": {"ndcg": test_ndcg[:, singles].max(axis=1)[None], "hints": [None], "calls": None},
        "best fixed hint set (train)": {"ndcg": test_ndcg[None, :, best_set], "hints": [float(sizes[best_set])],
                                        "calls": len(train_sample) * len(columns)},
        "oracle hint set": {"ndcg": test_ndcg.max(axis=1)[None], "hints": [None], "calls": None},
    }
    runs = {
        "one-hint PPO": lambda seed, d: (one_hint_ppo(one_id, kwargs, seed, d, sessions, args.timesteps), None),
        "compose MaskablePPO": lambda seed, d: compose_run("maskable_ppo", compose_id, compose_kwargs, seed, d,
                                                           sessions, args.timesteps),
        "compose PPO": lambda seed, d: compose_run("ppo", compose_id, compose_kwargs, seed, d, sessions, args.timesteps),
        "team, team reward": lambda seed, d: team_run("team", team_kwargs, seed, d, sessions, args.timesteps),
        "team, difference reward": lambda seed, d: team_run("difference", team_kwargs, seed, d, sessions,
                                                            args.timesteps),
    }
    for method, run in runs.items():
        rows, hints, calls = [], [], []
        for seed in range(args.seeds):
            started = time.time()
            table_dir = work / name / method.replace(" ", "_").replace(",", "") / f"s{seed}"
            table_dir.mkdir(parents=True, exist_ok=True)
            ranks, n_hints = run(seed, table_dir)
            rows.append(ndcg10(ranks))
            hints.append(float(np.mean(n_hints)) if n_hints is not None else 1.0)
            calls.append(known_entries(table_dir / "train.npz") + known_entries(table_dir / "test.npz"))
            print(f"[{name}] {method} seed {seed}: NDCG@10 {rows[-1].mean():.3f}, {hints[-1]:.2f} hints, "
                  f"{calls[-1]} distinct LLM calls, {time.time() - started:.0f} s", flush=True)
        scores[method] = {"ndcg": np.array(rows), "hints": hints, "calls": int(np.mean(calls))}
    reference = scores["one-hint PPO"]["ndcg"]
    table = []
    for method, s in scores.items():
        diff = paired_difference_ci(s["ndcg"], reference, reps=args.reps)
        vs_set = paired_difference_ci(s["ndcg"], scores["best fixed hint set (train)"]["ndcg"], reps=args.reps)
        per_seed = s["ndcg"].mean(axis=1)
        hints = [h for h in s["hints"] if h is not None]
        table.append({"method": method, "runs": int(len(per_seed)), "ndcg10": float(per_seed.mean()),
                      "ndcg10_seed_min": float(per_seed.min()), "ndcg10_seed_max": float(per_seed.max()),
                      "vs_one_hint_ppo": diff, "vs_best_fixed_set": vs_set,
                      "mean_hints": float(np.mean(hints)) if hints else None, "llm_calls": s["calls"]})
    test_env.close()
    train_env.close()
    return {"dataset": name, "one_hint_id": one_id, "compose_id": compose_id, "max_hints": args.max_hints,
            "test_sessions": int(len(sessions)), "train_sample": int(len(train_sample)), "n_sets": len(columns),
            "best_fixed_set": list(columns[best_set]), "best_fixed_hint": list(columns[best_hint]), "rows": table}


def _fmt(diff) -> str:
    return f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]"


def write_markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = ["# Several hints per prompt", "",
             f"Simulated LLM; up to {args.max_hints} hints per prompt; {args.seeds} seeds per RL method. NDCG@10 on the "
             "same sampled test sessions for every method (mean over seeds, with the lowest and highest seed). "
             "Differences are paired over test sessions and seeds (95% bootstrap interval, "
             f"{args.reps} resamples). *LLM calls*: distinct (session, hint set) prompts the method needed, "
             "training and test for RL runs (mean over seeds), the train sample's table for fixed choices; "
             "oracles are upper bounds that read every set's answer.", ""]
    for r in results:
        lines += [f"## {r['dataset']}", "",
                  f"`{r['one_hint_id']}` / `{r['compose_id']}` / `hint_team_v0`; {r['test_sessions']} test sessions; "
                  f"{r['n_sets']} hint sets of up to {r['max_hints']} hints; best fixed set (chosen on "
                  f"{r['train_sample']} train sessions): {len(r['best_fixed_set'])} hint(s).", "",
                  "| method | runs | NDCG@10 (seed range) | vs one-hint PPO [95%] | vs best fixed set [95%] | hints per prompt | LLM calls |",
                  "|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            seeds = f" ({row['ndcg10_seed_min']:.3f}-{row['ndcg10_seed_max']:.3f})" if row["runs"] > 1 else ""
            hints = f"{row['mean_hints']:.2f}" if row["mean_hints"] is not None else "per session"
            calls = f"{row['llm_calls']:,}" if row["llm_calls"] is not None else "-"
            lines.append(f"| {row['method']} | {row['runs']} | {row['ndcg10']:.3f}{seeds} | {_fmt(row['vs_one_hint_ppo'])} "
                         f"| {_fmt(row['vs_best_fixed_set'])} | {hints} | {calls} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.8), squeeze=False)
    for ax, r in zip(axes[0], results):
        rows = r["rows"]
        names = [row["method"] for row in rows]
        means = [row["ndcg10"] for row in rows]
        low = [row["ndcg10"] - row["ndcg10_seed_min"] for row in rows]
        high = [row["ndcg10_seed_max"] - row["ndcg10"] for row in rows]
        colors = ["tab:gray" if "oracle" in n or "fixed" in n or n == "no hint" else
                  "tab:blue" if n.startswith("one-hint") else "tab:orange" if n.startswith("compose") else "tab:green"
                  for n in names]
        y = np.arange(len(names))[::-1]
        ax.barh(y, means, xerr=[low, high], color=colors)
        for yy, m in zip(y, means):
            ax.text(m + 0.01, yy, f"{m:.3f}", va="center", fontsize=8)
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlabel("test NDCG@10 (mean over seeds; bars: seed range)")
        ax.set_title(f"{r['dataset']}: up to {r['max_hints']} hints")
        ax.set_xlim(0, max(means) * 1.2)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:gray", "tab:blue", "tab:orange", "tab:green")]
    fig.legend(handles, ["baselines / upper bounds", "one-hint env", "composition env", "team (hint_team_v0)"],
               loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS),
                        help="datasets to compare on (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per RL method (default 3)")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="env steps per RL run (default: each algorithm's hyperparameter file)")
    parser.add_argument("--max-hints", type=int, default=3, help="most hints per prompt, and team size (default 3)")
    parser.add_argument("--sessions", type=int, default=400,
                        help="test sessions scored, and train sessions for the best fixed set (default 400)")
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples (default 50,000)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder with the real datasets (default ../shared/data)")
    parser.add_argument("--out", type=Path, default=HERE / "hint_sets", help="output folder (default benchmarks/hint_sets)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)  # small networks: one thread is fastest, and runs stay reproducible
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="rec_gym_hint_sets_") as tmp:
        results = [run_dataset(name, args, Path(tmp)) for name in args.datasets]
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(write_markdown(results, args) + "\n", encoding="utf-8")
    plot(results, args.out / "comparison.png")
    import gymnasium
    import stable_baselines3

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/hint_sets.py", *(argv or sys.argv[1:])])
    (args.out / "command.txt").write_text(
        f"{command}\n# {time.time() - started:.0f} s on {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"gymnasium {gymnasium.__version__}, stable-baselines3 {stable_baselines3.__version__}\n", encoding="utf-8")
    print(write_markdown(results, args))


if __name__ == "__main__":
    main()
