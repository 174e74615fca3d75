"""rec_gym: a frozen LLM recommending from session data, as reinforcement-learning environments.

``import rec_gym`` registers ``Re2LLM-ML1M-v0``, ``Re2LLM-Steam-v0`` and ``Re2LLM-Synthetic-v0``.
"""

from rec_gym.envs import ENV_IDS, register_envs

__version__ = "0.1.0"

register_envs()



def __getattr__(name: str):
    if name == "Re2LLMEnv":
        from rec_gym.envs.re2llm import Re2LLMEnv

        return Re2LLMEnv
    raise AttributeError(name)


__all__ = ["ENV_IDS", "Re2LLMEnv", "__version__"]
