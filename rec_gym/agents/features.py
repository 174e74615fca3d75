"""SB3 policies whose first layer also sees the squared observation.

With the embedding observation (a mean of item embeddings), what tells a session's taste apart (all
items by one creator, of one era, of one franchise) is how *concentrated* that mean is along some
directions, which a squared term exposes directly; the session profile states such concentrations
outright, and the squared term then costs little. With ``normalize`` (``VecNormalize``) the input is
standardised first, so ``x ** 2`` is the squared distance from the average session along each
feature. Name them in a zoo hyperparameter file as
``policy: 'rec_gym.agents.features.SquaredFeaturesPolicy'`` (PPO, A2C) or
``'rec_gym.agents.features.SquaredFeaturesDQNPolicy'`` (DQN); rl_zoo3 resolves the dotted path too.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import DQNPolicy


class SquaredFeatures(BaseFeaturesExtractor):
    """``(n, d)`` observation -> ``(n, 2d)`` features ``[x, x ** 2]``."""

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__(observation_space, 2 * int(observation_space.shape[0]))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.flatten(1).float()
        return torch.cat([x, x * x], dim=1)


class SquaredFeaturesPolicy(ActorCriticPolicy):
    """SB3's ``MlpPolicy`` for PPO and A2C with :class:`SquaredFeatures` as its features extractor."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", SquaredFeatures)
        super().__init__(*args, **kwargs)


class SquaredFeaturesDQNPolicy(DQNPolicy):
    """SB3's DQN ``MlpPolicy`` with :class:`SquaredFeatures` as its features extractor."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", SquaredFeatures)
        super().__init__(*args, **kwargs)
