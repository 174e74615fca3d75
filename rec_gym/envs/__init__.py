"""Gymnasium environments; importing :mod:`rec_gym` registers their ids.

With Gymnasium (``gym.make(id)``) and, once Ray Tune's registry is imported (``ray.rllib`` imports it),
with Ray Tune too (:func:`register_rllib_envs`): RLlib's env runners are fresh processes that never
import rec_gym, and they look a string env up in Tune's registry, which every process of the Ray job
reads, before asking Gymnasium. So ``PPOConfig().environment("Re2LLM-Synthetic-v0", env_config={...})``
works by plain id, whichever of ``rec_gym`` and ``ray`` the program imports first, and ``import
rec_gym`` never imports Ray. Gymnasium 1.x has no entry-point plugin mechanism that would let the
runners find the ids without this.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import warnings
from typing import Any, Sequence

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


def rllib_env(env_id: str, config: dict[str, Any]) -> Any:
    """What Ray Tune's creator of ``env_id`` builds from RLlib's env config: ``gym.make(env_id, **config)``;
    ``gym.make_vec(..., vectorization_mode="vector_entry_point")`` when RLlib asks for ``num_envs`` copies."""
    import gymnasium as gym

    kwargs = dict(config)  # RLlib's EnvContext: the env config plus worker indices, which the env does not take
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is not None:
        return gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode="vector_entry_point", **kwargs)
    return gym.make(env_id, **kwargs)


def register_rllib_envs() -> None:
    """Register every id with Ray Tune (``ray.tune.registry.register_env``) and again after every ``ray.init``:
    Tune keeps registrations per Ray job and forgets them at ``ray.shutdown``."""
    import ray._private.worker
    from ray.tune.registry import register_env

    for env_id in (*ENV_IDS, *COMPOSE_ENV_IDS, *RLRF4REC_ENV_IDS):
        register_env(env_id, functools.partial(rllib_env, env_id))
    # The callbacks `ray.init` runs on success (where Tune's own registry flushes); private, hence looked up with care.
    hooks = getattr(ray._private.worker, "_post_init_hooks", None)
    if isinstance(hooks, list) and register_rllib_envs not in hooks:
        hooks.append(register_rllib_envs)


class _AfterTuneRegistry(importlib.abc.MetaPathFinder):
    """Runs :func:`register_rllib_envs` right after ``ray.tune.registry`` is first imported (importing nothing itself)."""

    MODULE = "ray.tune.registry"

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.MODULE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                run(module)
                _register_quietly()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _register_quietly() -> None:
    # A Ray whose registry has moved must not make `import ray.rllib` fail; the ids then need "rec_gym:<id>".
    try:
        register_rllib_envs()
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"rec_gym could not register its env ids with Ray Tune ({type(exc).__name__}: {exc}); "
                      'use "rec_gym:<env id>" in RLlib configs', RuntimeWarning, stacklevel=2)


def register_with_rllib() -> None:
    """Register the ids with Ray Tune now if its registry is imported, else as soon as it is."""
    if _AfterTuneRegistry.MODULE in sys.modules:
        _register_quietly()
    elif not any(isinstance(finder, _AfterTuneRegistry) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterTuneRegistry())


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
           "RLRF4REC_ENV_IDS", "register_envs",
           "register_rllib_envs", "register_with_rllib"]
