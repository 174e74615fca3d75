"""Gymnasium environments; importing :mod:`rec_gym` registers their ids."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from rec_gym.envs.re2llm import Re2LLMEnv

# Default LLM of the real-data ids. The simulator keeps them offline until a real backend is chosen.
REAL_DATA_LLM = "simulated"

ENV_IDS = {
    "Re2LLM-ML1M-v0": {"dataset": "ml-1m", "llm": REAL_DATA_LLM, "encoder": "minilm"},
    "Re2LLM-Steam-v0": {"dataset": "steam", "llm": REAL_DATA_LLM, "encoder": "minilm"},
    "Re2LLM-Synthetic-v0": {"dataset": "synthetic", "llm": "simulated", "encoder": "hashing"},
}


def register_envs() -> None:
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point="rec_gym.envs.re2llm:Re2LLMEnv",
                     vector_entry_point="rec_gym.envs.vector:Re2LLMVectorEnv", kwargs=dict(kwargs))


__all__ = ["Re2LLMEnv", "ENV_IDS", "register_envs"]
