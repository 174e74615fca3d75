"""rec_gym: a frozen LLM recommending from session data, as reinforcement-learning environments.

``import rec_gym`` registers ``Re2LLM-ML1M-v0``, ``Re2LLM-Steam-v0`` and ``Re2LLM-Synthetic-v0``.
"""

from rec_gym.envs import ENV_IDS, Re2LLMEnv, register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["ENV_IDS", "Re2LLMEnv", "__version__"]
