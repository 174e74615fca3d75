"""`env.step` of this checkout against an earlier revision's, side by side, each as a ratio to CartPole.

    python benchmarks/step_rate_vs_revision.py 548e5e9     # writes step_rate_vs_revision.txt

The earlier revision is checked out into a temporary git worktree; the two versions run alternately,
each in its own process with its own cache, stepping `Re2LLM-Synthetic-v0` (filled table, random
actions, reset at each episode end) and `CartPole-v1` in the same process, five times each (median).
Ratios to CartPole measured in the same process are what a shared machine's load cannot move much.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROUNDS = 2
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROBE = """
import time, numpy as np, gymnasium as gym, rec_gym
env = gym.make("Re2LLM-Synthetic-v0"); env.unwrapped.task.fill_all(progress=False)
cartpole = gym.make("CartPole-v1")
def rate(e, n=50_000):
    actions = np.random.default_rng(0).integers(e.action_space.n, size=n); e.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = e.step(int(a))
        if terminated or truncated:
            e.reset()
    return n / (time.perf_counter() - start)
pairs = [(rate(env), rate(cartpole)) for _ in range(5)]
print(f"{np.median([a / b for a, b in pairs]):.2f} {np.median([a for a, _ in pairs]):.0f}")
"""


def measure(source: Path, cache: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, "PYTHONPATH": str(source), "REC_GYM_CACHE": cache},
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


revision = sys.argv[1] if len(sys.argv) > 1 else "HEAD~1"
lines = [f"env.step through gym.make, ratio to CartPole-v1 in the same process (median of 5), this checkout vs {revision}"]
with tempfile.TemporaryDirectory() as tmp:
    old = Path(tmp) / "old"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), revision], check=True)
    try:
        for round_ in range(ROUNDS):
            for label, source in ((revision, old), ("this checkout", ROOT)):
                ratio, steps = measure(source, str(Path(tmp) / f"cache-{label.replace(' ', '-')}"))
                lines.append(f"  round {round_ + 1}  {label:14s} ratio {ratio:.2f}  ({steps:,.0f} steps/s)")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=True)
text = "\n".join(lines) + "\n"
print(text, end="")
(HERE / "step_rate_vs_revision.txt").write_text(text)
