"""Gymnasium environments; importing :mod:`rec_gym` registers their ids."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from rec_gym.llm.hf import DEFAULT_HF_MODEL

# The real-data ids default to a pinned open instruction-tuned model, so that "-v0" names one
# environment; llm="simulated" or llm="embedding:all-MiniLM-L6-v2" run them offline.
REAL_DATA_LLM = DEFAULT_HF_MODEL

# The synthetic world's sessions differ in how concentrated they are along one aspect, which the
# session profile states directly; the real-data ids observe the mean item embedding.
ENV_IDS = {
    "Re2LLM-ML1M-v0": {"dataset": "ml-1m", "llm": REAL_DATA_LLM, "encoder": "minilm", "observation": "embedding"},
    "Re2LLM-Steam-v0": {"dataset": "steam", "llm": REAL_DATA_LLM, "encoder": "minilm", "observation": "embedding"},
    "Re2LLM-Synthetic-v0": {"dataset": "synthetic", "llm": "simulated", "encoder": "hashing", "observation": "profile"},
}


# The composition ids: the same datasets and defaults, several hints per prompt (rec_gym.envs.compose).
COMPOSE_ENV_IDS = {env_id.replace("Re2LLM-", "Re2LLMCompose-"): kwargs for env_id, kwargs in ENV_IDS.items()}


# The RLRF4Rec preference-selection ids (rec_gym.envs.rlrf4rec): the same datasets; the LLM writes the texts.
RLRF4REC_ENV_IDS = {
    "RLRF4Rec-ML1M-v0": {"dataset": "ml-1m", "writer": REAL_DATA_LLM, "encoder": "minilm", "observation": "embedding"},
    "RLRF4Rec-Steam-v0": {"dataset": "steam", "writer": REAL_DATA_LLM, "encoder": "minilm", "observation": "embedding"},
    "RLRF4Rec-Synthetic-v0": {"dataset": "synthetic", "writer": "simulated", "encoder": "hashing",
                              "observation": "profile"},
}


def register_envs() -> None:
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point="rec_gym.envs.re2llm:Re2LLMEnv",
                     vector_entry_point="rec_gym.envs.vector:Re2LLMVectorEnv", kwargs=dict(kwargs))
    for env_id, kwargs in COMPOSE_ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point="rec_gym.envs.compose:Re2LLMComposeEnv", kwargs=dict(kwargs))
    for env_id, kwargs in RLRF4REC_ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point="rec_gym.envs.rlrf4rec:RLRF4RecEnv", kwargs=dict(kwargs))


def __getattr__(name: str):
    # Registration needs only entry-point strings; the env classes import torch-free but heavy
    # modules, so they load on first use and `import rec_gym` stays fast.
    if name == "Re2LLMEnv":
        from rec_gym.envs.re2llm import Re2LLMEnv

        return Re2LLMEnv
    if name == "Re2LLMComposeEnv":
        from rec_gym.envs.compose import Re2LLMComposeEnv

        return Re2LLMComposeEnv
    if name == "Re2LLMVectorEnv":
        from rec_gym.envs.vector import Re2LLMVectorEnv

        return Re2LLMVectorEnv
    if name == "RLRF4RecEnv":
        from rec_gym.envs.rlrf4rec import RLRF4RecEnv

        return RLRF4RecEnv
    raise AttributeError(name)


__all__ = ["Re2LLMEnv", "Re2LLMComposeEnv", "Re2LLMVectorEnv", "RLRF4RecEnv", "ENV_IDS", "COMPOSE_ENV_IDS",
           "RLRF4REC_ENV_IDS", "register_envs"]
