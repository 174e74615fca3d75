"""How the costs around the step grow with the number of sessions, up to about a million.

    python benchmarks/scaling.py                 # 1x .. 250x; writes scaling.txt, scaling.json, scaling.png
    python benchmarks/scaling.py --sizes 1 4     # a quick look (writes nothing)

Part 1, the ranker through ``rec-gym precompute`` (the default synthetic train split, 3,200 sessions x
21 prompts), side by side in one run: the vectorised simulated ranker (``simulated-v2``, no response
cache: the table is its record) and the item-by-item ``simulated-v1`` kept in
``tests/simulated_reference.py`` (with the response cache it had). Also how far v2's rankings are from
v1's: the two differ only in their noise streams.

Part 2, the synthetic world at 1x, 4x, 16x, 64x and 250x the default 4,000 sessions, each size in a
fresh process with its own cache folder:

- build: generate the world, assemble sessions (candidates, splits), build the observation matrix
  of each split (the env's default, the session profile) into the memory-mapped cache;
- checksum: one pass of the observation files' checksum check, what every new process pays the
  first time it maps them (the build pays one such pass too, hashing the bytes as it writes them);
  target at most 10% of the build;
- fill: every (session, prompt) pair of every split, 21 prompts each, saved as the feedback tables;
- step rate: ``env.step`` through ``gym.make`` on the filled train table, random actions, reset at
  each episode end, against ``CartPole-v1`` through ``gym.make`` in the same process;
- vector rate: the native vector env (1,024 copies, next-step autoreset);
- peak memory: the process's peak resident set size (``ru_maxrss``) at the end.

Targets (the scaling issue): at about 1M sessions, build plus fill under 10 minutes, peak memory under
4 GB, step rate at least CartPole's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ---- config ----
SIZES = (1, 4, 16, 64, 250)
BASE_SESSIONS = 4_000
STEPS = 50_000
VECTOR_ENVS, VECTOR_BATCHES = 1_024, 500
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "scaling"


def one_size(factor: int) -> dict:
    """Build, fill and step the world of ``factor`` x the default sessions (run in a fresh process)."""
    import gymnasium as gym
    import numpy as np

    import rec_gym  # noqa: F401  (registers the ids)
    from rec_gym.data.observations import observation_file_damage
    from rec_gym.data.sessions import assemble
    from rec_gym.data.synthetic import generate_synthetic
    from rec_gym.envs.task import Re2LLMTask

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    result: dict = {"factor": factor, "sessions": factor * BASE_SESSIONS}
    start = time.perf_counter()
    catalog, raw = generate_synthetic(n_sessions=factor * BASE_SESSIONS)
    result["generate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset = assemble("synthetic", catalog, raw, n_candidates=50, seed=0)
    del raw
    result["assemble_s"] = time.perf_counter() - start
    start = time.perf_counter()
    tasks = {split: Re2LLMTask(dataset=dataset, split=split, observation="profile", encoder="hashing")
             for split in ("train", "val", "test")}
    result["observations_s"] = time.perf_counter() - start
    result["build_s"] = result["generate_s"] + result["assemble_s"] + result["observations_s"]
    result["peak_after_build_mb"] = peak_mb()
    start = time.perf_counter()
    for task in tasks.values():
        # The matrix is a read-only view of the memory map of its cache file.
        assert observation_file_damage(Path(task.observations.base.filename), task.observations.shape[0]) is None
    result["checksum_s"] = time.perf_counter() - start
    result["checksum_share_of_build"] = result["checksum_s"] / result["build_s"]
    start = time.perf_counter()
    pairs = 0
    for task in tasks.values():
        task.fill_all(progress=False)
        pairs += task.table.ranks.size
    result["fill_s"] = time.perf_counter() - start
    result["pairs"] = pairs
    result["fill_us_per_pair"] = result["fill_s"] / pairs * 1e6
    result["peak_after_fill_mb"] = peak_mb()
    del tasks

    def steps_per_second(env: gym.Env, n: int) -> float:
        actions = np.random.default_rng(0).integers(env.action_space.n, size=n)
        env.reset(seed=0)
        begin = time.perf_counter()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                env.reset()
        return n / (time.perf_counter() - begin)

    start = time.perf_counter()
    env = gym.make("Re2LLM-Synthetic-v0", dataset=dataset)
    result["make_env_s"] = time.perf_counter() - start
    cartpole = gym.make("CartPole-v1")
    rec, cart = [], []
    for _ in range(3):  # interleaved, so a busy moment slows both
        rec.append(steps_per_second(env, STEPS))
        cart.append(steps_per_second(cartpole, STEPS))
    result["steps_per_s"], result["cartpole_steps_per_s"] = float(np.median(rec)), float(np.median(cart))
    result["step_ratio_vs_cartpole"] = result["steps_per_s"] / result["cartpole_steps_per_s"]
    vec = gym.make_vec("Re2LLM-Synthetic-v0", num_envs=VECTOR_ENVS, vectorization_mode="vector_entry_point",
                       dataset=dataset)
    vec.reset(seed=0)
    actions = np.random.default_rng(0).integers(vec.single_action_space.n, size=(VECTOR_BATCHES, VECTOR_ENVS))
    begin = time.perf_counter()
    for batch in actions:
        vec.step(batch)
    result["vector_steps_per_s"] = VECTOR_BATCHES * VECTOR_ENVS / (time.perf_counter() - begin)
    result["peak_mb"] = peak_mb()
    return result


def ranker_speed() -> dict:
    """``rec-gym precompute`` on the default synthetic train split with v2 and with the v1 reference."""
    import numpy as np

    out: dict = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "REC_GYM_CACHE": cache, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        tables = {}
        for label, extra in (("v2", []), ("v1", ["--backend-factory", "simulated_reference:make_v1"])):
            tables[label] = Path(cache) / f"{label}.npz"
            cmd = [sys.executable, "-m", "rec_gym.cli", "precompute", "--env", "Re2LLM-Synthetic-v0", "--no-progress",
                   "--table", str(tables[label]), *extra]
            printed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            match = re.search(r"(\d+) filled by this run in ([\d.]+) s \(([\d.]+) us per pair\)", printed)
            out[label] = {"pairs": int(match.group(1)), "seconds": float(match.group(2)),
                          "us_per_pair": float(match.group(3))}
            caches = list(Path(cache).rglob("*.sqlite"))
            out[label]["response_cache_bytes"] = sum(p.stat().st_size for p in caches)
            for p in caches:
                p.unlink()
        from rec_gym.feedback.table import FeedbackTable

        v1, v2 = (FeedbackTable.load(tables[k]).metric_ranks().astype(float) for k in ("v1", "v2"))
        ndcg = lambda r: np.where((r >= 1) & (r <= 10), 1.0 / np.log2(r + 1.0), 0.0)  # noqa: E731
        out["same_rank_share"] = float(np.mean(v1 == v2))
        out["ndcg_v1_by_prompt"] = ndcg(v1).mean(axis=0).round(4).tolist()
        out["ndcg_v2_by_prompt"] = ndcg(v2).mean(axis=0).round(4).tolist()
        out["prompt_order_correlation"] = float(np.corrcoef(np.argsort(np.argsort(ndcg(v1).mean(axis=0))),
                                                            np.argsort(np.argsort(ndcg(v2).mean(axis=0))))[0, 1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_size(args.one)))
        return
    full = tuple(args.sizes) == SIZES
    ranker = ranker_speed()
    print(f"precompute, default synthetic train split: v2 {ranker['v2']['us_per_pair']:.1f} us/pair, "
          f"v1 {ranker['v1']['us_per_pair']:.1f} us/pair", flush=True)
    rows = []
    for factor in args.sizes:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "REC_GYM_CACHE": cache, "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, __file__, "--one", str(factor)], env=env, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                sys.exit(f"size {factor}x failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{factor:4d}x {r['sessions']:>9,d} sessions: build {r['build_s']:7.1f} s (checksum pass "
              f"{r['checksum_s']:.2f} s), fill {r['fill_s']:6.1f} s, "
              f"step {r['steps_per_s']:>9,.0f}/s ({r['step_ratio_vs_cartpole']:.2f}x CartPole), vector "
              f"{r['vector_steps_per_s']:>12,.0f}/s, peak {r['peak_mb']:,.0f} MB", flush=True)
    if not full:
        return
    write_outputs(ranker, rows)


def write_outputs(ranker: dict, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    header = (f"rec_gym scaling  (python {platform.python_version()}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} at the end)")
    v1, v2 = ranker["v1"], ranker["v2"]
    lines = [header, "", "1. The simulated ranker through `rec-gym precompute` (default synthetic train split, "
             f"{v2['pairs']:,} pairs), side by side:",
             f"   simulated-v2 (vectorised, no response cache): {v2['us_per_pair']:7.1f} us per pair, "
             f"response cache {v2['response_cache_bytes']:,} bytes",
             f"   simulated-v1 (item by item, response cache):  {v1['us_per_pair']:7.1f} us per pair, "
             f"response cache {v1['response_cache_bytes']:,} bytes "
             f"({v1['response_cache_bytes'] / v1['pairs']:.0f} bytes per pair)",
             f"   speed-up {v1['us_per_pair'] / v2['us_per_pair']:.0f}x (target: v2 <= 5 us per pair)",
             f"   v2 vs v1 rankings: same target rank in {ranker['same_rank_share']:.1%} of pairs (the noise streams "
             "differ); rank correlation of the 21 prompts' mean NDCG@10: "
             f"{ranker['prompt_order_correlation']:.3f}", "",
             "2. The synthetic world by size (each size a fresh process and cache; 21 prompts per session, "
             "every split filled):", ""]
    cols = ("factor", "sessions", "generate_s", "assemble_s", "observations_s", "build_s", "checksum_s", "fill_s",
            "fill_us_per_pair", "steps_per_s", "step_ratio_vs_cartpole", "vector_steps_per_s", "peak_after_build_mb",
            "peak_mb")
    lines.append("  ".join(f"{c:>14s}" for c in cols))
    for r in rows:
        lines.append("  ".join(f"{r[c]:>14,.2f}" if isinstance(r[c], float) else f"{r[c]:>14,d}" for c in cols))
    big = rows[-1]
    build_fill = big["build_s"] + big["fill_s"]
    parts = {"generate": big["generate_s"], "assemble": big["assemble_s"], "observations": big["observations_s"],
             "fill": big["fill_s"]}
    limit = max(parts, key=parts.get)
    lines += ["", f"At {big['sessions']:,} sessions: build + fill {build_fill / 60:.1f} min (target < 10), peak memory "
              f"{big['peak_mb'] / 1024:.2f} GB (target < 4), step rate {big['step_ratio_vs_cartpole']:.2f}x CartPole "
              f"(target >= 1). The largest part is {limit} ({parts[limit]:.0f} s of {build_fill:.0f} s).",
              f"Checksums: one pass over the observation files takes {big['checksum_s']:.2f} s, "
              f"{big['checksum_share_of_build']:.1%} of the build (target <= 10%)."]
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "scaling.txt").write_text(text)
    (OUT / "scaling.json").write_text(json.dumps({"ranker": ranker, "sizes": rows}, indent=2) + "\n")
    print(text)

    sessions = [r["sessions"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("generate_s", "generate"), ("assemble_s", "assemble"), ("observations_s", "observations"),
                       ("fill_s", "fill (21 prompts)")):
        left.plot(sessions, [r[key] for r in rows], marker="o", label=label)
    left.plot(sessions, [r["build_s"] + r["fill_s"] for r in rows], marker="s", color="black", label="build + fill")
    left.axhline(600, color="grey", linestyle=":", label="10 minutes")
    left.set(xscale="log", yscale="log", xlabel="sessions", ylabel="seconds", title="Time")
    left.legend(fontsize=8)
    right.plot(sessions, [r["peak_mb"] for r in rows], marker="o", label="peak memory (MB)")
    right.plot(sessions, [r["steps_per_s"] for r in rows], marker="o", label="env.step per s")
    right.plot(sessions, [r["cartpole_steps_per_s"] for r in rows], marker="x", linestyle="--", label="CartPole step per s")
    right.plot(sessions, [r["vector_steps_per_s"] for r in rows], marker="o", label="vector env steps per s")
    right.axhline(4096, color="grey", linestyle=":", label="4 GB")
    right.set(xscale="log", yscale="log", xlabel="sessions", title="Memory and step rates")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "scaling.png", dpi=120)


if __name__ == "__main__":
    main()
