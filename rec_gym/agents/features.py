"""SB3 policies shaped for rec_gym's observations.

- :class:`TextChoicePolicy` (PPO, A2C on the ``RLRF4Rec-*`` ids): one network scores every preference text
  of the observation against the session, so what it learns of a text at one position holds at all of them.
- :class:`SquaredFeaturesPolicy` and :class:`SquaredFeaturesDQNPolicy`: the first layer also sees the
  squared observation.

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
from torch import nn
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


class TextChoiceNetwork(nn.Module):
    """Actor and critic heads of :class:`TextChoicePolicy` (SB3's ``mlp_extractor`` slot).

    The observation ``[session (d_s), text 1 (d_t), ..., text N (d_t)]`` is split into the session and
    its ``N`` texts. One network encodes the session, one (shared by every slot) each text; a third scores
    each text against the session. The actor's output is the logits themselves: action 0 (no text) scored
    from the session alone, action ``a`` from text ``a``. Every text goes through the same weights, so
    what the policy learns of a text at one position holds at every position, and permuting the texts
    permutes the logits. The critic reads the session and the mean and maximum of the text codes.
    """

    def __init__(self, feature_dim: int, n_texts: int, text_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.n_texts, self.text_dim = int(n_texts), int(text_dim)
        self.session_dim = int(feature_dim) - self.n_texts * self.text_dim
        if self.session_dim < 0 or self.n_texts < 1 or self.text_dim < 1:
            raise ValueError(f"an observation of {feature_dim} values cannot hold {n_texts} texts of {text_dim} values "
                             "each; pass text_dim, the width of one text's embedding")
        self.session = nn.Sequential(nn.Linear(max(self.session_dim, 1), hidden), nn.Tanh())
        self.text = nn.Sequential(nn.Linear(self.text_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.score = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.no_text = nn.Linear(hidden, 1)
        self.latent_dim_pi = self.n_texts + 1
        self.latent_dim_vf = 3 * hidden

    def _codes(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features.flatten(1).float()
        session = x[:, :self.session_dim] if self.session_dim else x.new_zeros((x.shape[0], 1))
        texts = x[:, self.session_dim:].reshape(x.shape[0], self.n_texts, self.text_dim)
        return self.session(session), self.text(texts)

    def _logits(self, session: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        paired = session.unsqueeze(1).expand_as(texts)
        scores = self.score(torch.cat([paired, texts, paired * texts], dim=2)).squeeze(2)
        return torch.cat([self.no_text(session), scores], dim=1)

    @staticmethod
    def _value_features(session: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return torch.cat([session, texts.mean(dim=1), texts.max(dim=1).values], dim=1)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self._logits(*self._codes(features))

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self._value_features(*self._codes(features))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self._codes(features)  # once for both heads: a training step calls this
        return self._logits(*codes), self._value_features(*codes)


class TextChoicePolicy(ActorCriticPolicy):
    """PPO/A2C policy for ``RLRF4Rec-*`` envs: one scorer shared by every text slot (:class:`TextChoiceNetwork`).

    ``text_dim`` is the width of one text's embedding in the observation (``env.unwrapped.task.text_dim``;
    ``rec-gym train`` fills it in); the number of texts is read from the action space (``Discrete(N + 1)``).
    Name it as ``policy: 'rec_gym.agents.features.TextChoicePolicy'``.
    """

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Discrete, *args: Any,
                 text_dim: int, hidden: int = 64, **kwargs: Any) -> None:
        if not isinstance(action_space, gym.spaces.Discrete) or action_space.n < 2:
            raise ValueError(f"TextChoicePolicy needs a Discrete(N + 1) action space (action 0 and N texts), "
                             f"got {action_space}")
        self.text_dim, self.hidden = int(text_dim), int(hidden)
        super().__init__(observation_space, action_space, *args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = TextChoiceNetwork(self.features_dim, int(self.action_space.n) - 1, self.text_dim,
                                               self.hidden)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # The network's output is already one logit per action: no dense layer mixes the slots.
        self.action_net = nn.Identity()
        with torch.no_grad():  # near-uniform at first, as SB3's small-gain action layer makes it
            for layer in (self.mlp_extractor.score[-1], self.mlp_extractor.no_text):
                layer.weight.mul_(0.01)
                layer.bias.zero_()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(text_dim=self.text_dim, hidden=self.hidden)
        return data
