"""TextChoicePolicy: one scorer shared by every text slot of an RLRF4Rec observation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from rec_gym.agents.features import TextChoicePolicy

SESSION, N, TEXT = 3, 4, 5


class MarkedTextEnv(gym.Env):
    """A one-step bandit: of N random texts, the one whose first component is 1 pays 1, every other 0."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (SESSION + N * TEXT,), np.float32)
    action_space = gym.spaces.Discrete(N + 1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        texts = self.np_random.uniform(-1, 1, (N, TEXT)).astype(np.float32)
        texts[:, 0] = -1.0
        self.good = int(self.np_random.integers(N))
        texts[self.good, 0] = 1.0
        session = self.np_random.uniform(-1, 1, SESSION).astype(np.float32)
        self.obs = np.concatenate([session, texts.ravel()])
        return self.obs, {}

    def step(self, action):
        return self.obs, float(int(action) == self.good + 1), True, False, {}


def _policy(seed=0):
    return PPO(TextChoicePolicy, MarkedTextEnv(), policy_kwargs=dict(text_dim=TEXT), seed=seed, device="cpu").policy


def test_permuting_the_texts_permutes_their_logits_and_leaves_no_text_and_the_value_alone():
    policy = _policy()
    obs = torch.as_tensor(MarkedTextEnv().reset(seed=3)[0]).unsqueeze(0)
    order = [2, 0, 3, 1]
    texts = obs[:, SESSION:].reshape(1, N, TEXT)
    permuted = torch.cat([obs[:, :SESSION], texts[:, order].reshape(1, -1)], dim=1)
    with torch.no_grad():
        logits = policy.get_distribution(obs).distribution.logits
        logits_p = policy.get_distribution(permuted).distribution.logits
        value, value_p = policy.predict_values(obs), policy.predict_values(permuted)
    torch.testing.assert_close(logits_p[0, 1:], logits[0, 1:][order])
    torch.testing.assert_close(logits_p[0, 0], logits[0, 0])
    torch.testing.assert_close(value_p, value)


def test_it_starts_near_uniform_and_ppo_learns_to_pick_the_marked_text_wherever_it_is():
    model = PPO(TextChoicePolicy, MarkedTextEnv(), policy_kwargs=dict(text_dim=TEXT), n_steps=256, batch_size=64,
                gamma=0.0, seed=0, device="cpu")
    env = MarkedTextEnv()
    obs = np.stack([env.reset(seed=s)[0] for s in range(200)])
    with torch.no_grad():
        probs = model.policy.get_distribution(torch.as_tensor(obs)).distribution.probs.numpy()
    assert np.abs(probs - 1 / (N + 1)).max() < 0.02
    model.learn(4096)
    goods = [env.reset(seed=s) and env.good for s in range(200)]
    actions, _ = model.predict(obs, deterministic=True)
    assert np.mean(actions == np.array(goods) + 1) > 0.9  # chance is 1 in 5


def test_a_width_that_does_not_divide_the_observation_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="cannot hold 4 texts of 50 values each; pass text_dim"):
        PPO(TextChoicePolicy, MarkedTextEnv(), policy_kwargs=dict(text_dim=50), device="cpu")
