"""Environment speed and memory: the figures of the core issue, measured side by side in one run.

    python benchmarks/env_speed.py            # writes benchmarks/env_speed.txt and env_speed.json

1. ``env.step`` through ``gym.make`` with a filled feedback table vs ``CartPole-v1`` through ``gym.make``
   (same loop: random actions, reset when an episode ends); target: ratio >= 1.
2. ``gym.make("Re2LLM-Synthetic-v0")`` in a fresh process once its caches exist; target: < 5 s.
3. The env's own arrays for an ML-1M-sized setting (6,040 sessions, 3,883 items, 384-d observations,
   21 actions); target: < 100 MB.
4. The native vector env, ``gym.make_vec(id, num_envs=1024, vectorization_mode="vector_entry_point")``, in
   each autoreset mode (wall-clock and process CPU time; the CPU figure is what a shared machine
   cannot take away); target: >= 1,000,000 steps per second in the fastest mode.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

# ---- config ----
ENV_ID = "Re2LLM-Synthetic-v0"
SINGLE_STEPS = 100_000
VECTOR_ENVS = 1024
VECTOR_BATCHES = 2_000
ML1M_SESSIONS, ML1M_ITEMS, ML1M_DIM = 6_040, 3_883, 384
OUT = Path(__file__).with_suffix("")
CACHE = os.environ.setdefault("REC_GYM_CACHE", str(Path(tempfile.gettempdir()) / "rec_gym_bench_cache"))

import rec_gym  # noqa: E402  (registers the ids; after REC_GYM_CACHE is set)
from rec_gym.data.sessions import assemble  # noqa: E402
from rec_gym.data.synthetic import generate_synthetic  # noqa: E402
from rec_gym.envs.task import Re2LLMTask  # noqa: E402


def steps_per_second(env: gym.Env, n: int, n_actions: int) -> float:
    actions = np.random.default_rng(0).integers(n_actions, size=n)
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            env.reset()
    return n / (time.perf_counter() - start)


lines = [f"rec_gym env speed  (python {platform.python_version()}, gymnasium {gym.__version__}, "
         f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus)", ""]
results: dict[str, float] = {}

# Fill the train table once so that steps are lookups (as after `rec-gym precompute`).
env = gym.make(ENV_ID)
start = time.perf_counter()
env.unwrapped.task.fill_all(progress=False)
results["table_fill_s"] = time.perf_counter() - start
lines.append(f"feedback table fill ({env.unwrapped.task.n_sessions} sessions x 21 hints, simulated): "
             f"{results['table_fill_s']:.1f} s")

# 1. single env vs CartPole, alternated twice so both see the same machine state.
ours, cartpole = [], []
for _ in range(2):
    ours.append(steps_per_second(env, SINGLE_STEPS, 21))
    cartpole.append(steps_per_second(gym.make("CartPole-v1"), SINGLE_STEPS, 2))
results["single_steps_per_s"] = max(ours)
results["cartpole_steps_per_s"] = max(cartpole)
results["single_vs_cartpole"] = results["single_steps_per_s"] / results["cartpole_steps_per_s"]
lines += ["", "1. single env through gym.make (best of 2, steps/s)",
          f"   {ENV_ID:24s} {results['single_steps_per_s']:>12,.0f}",
          f"   {'CartPole-v1':24s} {results['cartpole_steps_per_s']:>12,.0f}",
          f"   ratio {results['single_vs_cartpole']:.2f}  (target >= 1)"]
env.close()

# 2. build time in a fresh process, caches warm.
code = ("import time; t0 = time.perf_counter(); import gymnasium as gym, rec_gym; t1 = time.perf_counter(); "
        f"env = gym.make('{ENV_ID}'); t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
imp, build = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       env=dict(os.environ)).stdout.split())
results["import_s"], results["build_s"] = imp, build
lines += ["", "2. gym.make in a fresh process, caches warm",
          f"   import rec_gym {imp:.2f} s, gym.make {build:.2f} s  (target: build < 5 s)"]

# 3. an ML-1M-sized setting: the env's own arrays.
catalog, sessions = generate_synthetic(seed=1, n_sessions=ML1M_SESSIONS, n_items=ML1M_ITEMS, n_creators=150,
                                       n_franchises=200)
dataset = assemble("ml1m-sized", catalog, sessions)
task = Re2LLMTask(dataset, encoder=f"hashing-{ML1M_DIM}", split="train", persist=False)
arrays = {"history": dataset.history, "target": dataset.target, "candidates": dataset.candidates,
          "target_pos": dataset.target_pos, "split": dataset.split, "session_ids": dataset.session_ids,
          "observations": task.observations, "feedback ranks": task.table.ranks, "rows": task.rows}
total = sum(a.nbytes for a in arrays.values())
results["ml1m_sized_array_mb"] = total / 2**20
lines += ["", f"3. env arrays, ML-1M-sized ({ML1M_SESSIONS} sessions, {ML1M_ITEMS} items, {ML1M_DIM}-d, 21 actions)"]
lines += [f"   {name:16s} {a.nbytes / 2**20:8.2f} MB  {a.dtype} {a.shape}" for name, a in arrays.items()]
lines.append(f"   total {results['ml1m_sized_array_mb']:.1f} MB  (target < 100 MB)")

# 4. native vector env, in each autoreset mode; under Disabled the loop resets the finished sub-envs itself.
lines += ["", f"4. native vector env, num_envs={VECTOR_ENVS}, one-session episodes (steps/s, wall and process CPU)"]
batches = np.random.default_rng(0).integers(21, size=(VECTOR_BATCHES, VECTOR_ENVS))
for mode in ("NextStep", "SameStep", "Disabled"):
    venv = gym.make_vec(ENV_ID, num_envs=VECTOR_ENVS, vectorization_mode="vector_entry_point", autoreset_mode=mode)
    venv.reset(seed=0)
    for a in batches[:50]:
        _, _, terminated, truncated, _ = venv.step(a)
        if mode == "Disabled":
            venv.reset(options={"reset_mask": terminated | truncated})
    wall, cpu = time.perf_counter(), time.process_time()
    for a in batches:
        _, _, terminated, truncated, _ = venv.step(a)
        if mode == "Disabled":
            venv.reset(options={"reset_mask": terminated | truncated})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    key = mode.lower()
    results[f"vector_{key}_steps_per_s"] = VECTOR_ENVS * VECTOR_BATCHES / wall
    results[f"vector_{key}_cpu_steps_per_s"] = VECTOR_ENVS * VECTOR_BATCHES / cpu
    lines.append(f"   {mode:9s} {results[f'vector_{key}_steps_per_s']:>12,.0f} wall  "
                 f"{results[f'vector_{key}_cpu_steps_per_s']:>12,.0f} cpu")
    venv.close()
results["vector_steps_per_s"] = max(results[f"vector_{m}_steps_per_s"] for m in ("nextstep", "samestep", "disabled"))
lines.append(f"   fastest mode {results['vector_steps_per_s']:,.0f} steps/s  (target >= 1,000,000)")

OUT.with_suffix(".txt").write_text("\n".join(lines) + "\n")
OUT.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
print("\n".join(lines))
