"""Retrieval policies: baselines, SB3 training, evaluation, and the protocol custom agents follow.

Any object with SB3's ``predict(obs, deterministic=True) -> (action, state)`` is a policy
(:class:`Policy`), so SB3 models, the baselines and your own agent are scored by the same
:func:`evaluate`. :data:`CUSTOM_AGENT_EXAMPLE` is the README's example, run verbatim by the tests.
"""

from rec_gym.agents.baselines import BestFixedHint, FixedHint, LinUCB, NoHint, Oracle, UniformRandomHint
from rec_gym.agents.evaluation import METRICS, EvaluationResult, evaluate, score_actions
from rec_gym.agents.policy import Policy, predict_actions
from rec_gym.agents.statistics import iqm, stratified_bootstrap_ci, summarize

CUSTOM_AGENT_EXAMPLE = '''\
import gymnasium as gym
import numpy as np
from rec_gym.agents import BestFixedHint, evaluate


class AnchorBandit:
    """Groups sessions by their nearest of 16 anchor sessions and learns each group's best hint."""

    def __init__(self, env, n_groups=16, steps=3000, epsilon=0.2, seed=0):
        rng = np.random.default_rng(seed)
        self.anchors = np.stack([env.reset(seed=seed + g)[0] for g in range(n_groups)])
        self.value = np.zeros((n_groups, env.action_space.n))
        self.count = np.zeros_like(self.value)
        for _ in range(steps):  # epsilon-greedy, one session per episode
            g = self.group(env.reset()[0])
            a = rng.integers(env.action_space.n) if rng.random() < epsilon else self.value[g].argmax()
            reward = env.step(a)[1]
            self.count[g, a] += 1
            self.value[g, a] += (reward - self.value[g, a]) / self.count[g, a]

    def group(self, obs):
        return int(np.argmin(((self.anchors - obs) ** 2).sum(axis=-1)))

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return int(self.value[self.group(obs)].argmax()), state  # one observation at a time


agent = AnchorBandit(gym.make("Re2LLM-Synthetic-v0", split="train"))
print("agent     ", evaluate(agent, "Re2LLM-Synthetic-v0", split="test")["NDCG@10"])
print("best fixed", evaluate(BestFixedHint.fit("Re2LLM-Synthetic-v0"), "Re2LLM-Synthetic-v0")["NDCG@10"])
'''

__all__ = [
    "BestFixedHint", "CUSTOM_AGENT_EXAMPLE", "EvaluationResult", "FixedHint", "LinUCB", "METRICS", "NoHint",
    "Oracle", "Policy", "UniformRandomHint", "evaluate", "iqm", "predict_actions", "score_actions",
    "stratified_bootstrap_ci", "summarize",
]
