"""RLRF4Rec-Synthetic-v0: a PPO policy against first, random, best-fixed-position and oracle texts; and the
agreement between the recommender's reward and the (simulated) LLM's reward for the same hints.

Run from the project root:

    python benchmarks/rlrf4rec/env_policies.py

Writes env_policies.md and .json next to this script. Everything is offline: the synthetic sessions,
the simulated preference writer and the simulated LLM ranker (neither is a language model).

Part 1: PPO (SB3) trains on the train split of RLRF4Rec-Synthetic-v0 (reward "score_gain") and is
evaluated on every test session, twice with the same settings and steps: with SB3's MlpPolicy (one dense
network over the whole observation) and with rec_gym.agents.features.TextChoicePolicy (one scorer shared
by every text slot). The baselines pick the first text, a uniformly random text, the position with the
best mean reward on the train split, or each session's best text (oracle). "Share of the gap" is a
policy's reward over the oracle's (both against no text, whose reward is 0).

Part 2: for the test sessions of Re2LLM-Synthetic-v0 and its 20 knowledge-base hints, the reward of
each (session, hint) pair from the simulated LLM (the env's NDCG@10 gain) and from the
knowledge-augmented SASRec of part 1 reading the hint (rec_gym.recsys.ranker.RecsysRanker), and their
Spearman correlation: over all pairs, and over the 20 hints' mean rewards.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from scipy.stats import spearmanr
from stable_baselines3 import PPO

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.agents.baselines import action_ranks
from rec_gym.agents.features import TextChoicePolicy
from rec_gym.recsys.ranker import RecsysRanker

ENV_ID = "RLRF4Rec-Synthetic-v0"
PPO_KWARGS = dict(n_steps=512, batch_size=128, n_epochs=5, gamma=0.0, learning_rate=3e-4, ent_coef=0.01, seed=0)
TIMESTEPS = 30_000
OUT = Path(__file__).resolve().parent / "env_policies"

torch.set_num_threads(1)
train_env, test_env = gym.make(ENV_ID, split="train"), gym.make(ENV_ID, split="test")
train_task, test_task = train_env.unwrapped.task, test_env.unwrapped.task
n, n_texts = test_task.n_sessions, test_task.n_texts
rewards, ndcg = test_task.rewards(), test_task.ndcg  # (n, N + 1): action 0 = no text, a = text a - 1
rows = np.arange(n)
well_formed = np.hstack([np.zeros((n, 1), dtype=bool), test_task.well_formed])


oracle_gain = float(rewards[rows, np.argmax(ndcg[:, 1:], axis=1) + 1].mean())


def summary(actions: np.ndarray) -> dict[str, float]:
    gain = float(rewards[rows, actions].mean())
    return {"NDCG@10": float(ndcg[rows, actions].mean()), "reward (score gain)": gain,
            "share of the gap": gain / oracle_gain, "well-formed share": float(well_formed[rows, actions].mean())}


ppo_seconds, ppo_actions = {}, {}
for name, policy, kwargs in (("MlpPolicy", "MlpPolicy", {}),
                             ("TextChoicePolicy", TextChoicePolicy, {"text_dim": train_task.text_dim})):
    started = time.time()
    model = PPO(policy, train_env, device="cpu", policy_kwargs=kwargs, **PPO_KWARGS).learn(TIMESTEPS)
    ppo_seconds[name] = round(time.time() - started, 1)
    ppo_actions[name] = np.asarray(model.predict(test_task.observations, deterministic=True)[0], dtype=int)
best_position = 1 + int(np.argmax(train_task.rewards()[:, 1:].mean(axis=0)))
random_actions = 1 + np.random.default_rng(0).integers(n_texts, size=n)
results = {
    "no text (action 0)": summary(np.zeros(n, dtype=int)),
    "first text (action 1)": summary(np.ones(n, dtype=int)),
    "random text": summary(random_actions),
    f"best fixed text position (action {best_position}, chosen on train)": summary(np.full(n, best_position)),
    **{f"PPO, {name} ({TIMESTEPS} steps)": summary(actions) for name, actions in ppo_actions.items()},
    "oracle (per-session best text)": summary(1 + np.argmax(ndcg[:, 1:], axis=1)),
}
print(json.dumps(results, indent=1), file=sys.stderr)

# Part 2: the recommender's reward against the simulated LLM's for the same hints.
hint_env = gym.make("Re2LLM-Synthetic-v0", split="test")
hint_task = hint_env.unwrapped.task
llm_ranks = action_ranks(hint_task, np.arange(hint_task.n_sessions))  # its columns only: the file may hold hint sets
k = hint_task.n_actions
llm_gain = hint_task.ndcg_of_rank[llm_ranks[:, 1:]] - hint_task.ndcg_of_rank[llm_ranks[:, :1]]
recsys = gym.make("Re2LLM-Synthetic-v0", split="test",
                  llm=RecsysRanker(test_task.recommender, hint_task.dataset.catalog)).unwrapped.task
recsys_ranks = action_ranks(recsys, np.arange(recsys.n_sessions))
recsys_gain = recsys.ndcg_of_rank[recsys_ranks[:, 1:]] - recsys.ndcg_of_rank[recsys_ranks[:, :1]]
pairs_rho = spearmanr(llm_gain.ravel(), recsys_gain.ravel()).statistic
hints_rho = spearmanr(llm_gain.mean(axis=0), recsys_gain.mean(axis=0)).statistic
agreement = {"sessions": int(llm_gain.shape[0]), "hints": int(k - 1),
             "spearman over (session, hint) pairs": float(pairs_rho),
             "spearman over the hints' mean rewards": float(hints_rho),
             "mean reward, simulated LLM": float(llm_gain.mean()), "mean reward, recsys": float(recsys_gain.mean())}
print(json.dumps(agreement, indent=1), file=sys.stderr)

command = "python benchmarks/rlrf4rec/env_policies.py"
OUT.with_suffix(".json").write_text(json.dumps({"command": command, "env": ENV_ID, "ppo": PPO_KWARGS,
                                                "timesteps": TIMESTEPS, "ppo_seconds": ppo_seconds,
                                                "test_sessions": n, "policies": results, "agreement": agreement},
                                               indent=2) + "\n")
lines = [f"# {ENV_ID}: policies on the test split ({n} sessions, {n_texts} texts each)", "", f"Command: `{command}`", "",
         "| policy | NDCG@10 | reward (score gain) | share of the gap | well-formed share |", "|---|---|---|---|---|"]
for label, m in results.items():
    lines.append(f"| {label} | {m['NDCG@10']:.3f} | {m['reward (score gain)']:+.3f} | {m['share of the gap']:.0%} | "
                 f"{m['well-formed share']:.2f} |")
seconds = ", ".join(f"{name} {value:.0f} s" for name, value in ppo_seconds.items())
lines += ["", f"PPO: {PPO_KWARGS}, {TIMESTEPS} steps each ({seconds}).", "",
          "## Recommender reward vs simulated-LLM reward for the same hints (Re2LLM-Synthetic-v0, test split)", "",
          "| measure | value |", "|---|---|"]
lines += [f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |" for key, value in agreement.items()]
OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
