"""rec_gym: a frozen LLM recommending from session data, as reinforcement-learning environments.

``import rec_gym`` registers the env ids (``Re2LLM-*``, ``Re2LLMCompose-*``, ``RLRF4Rec-*``) with
Gymnasium, and with Ray Tune once Ray's registry is imported (see :mod:`rec_gym.envs`).

A process forked from one that imported rec_gym and torch runs torch on one thread (the fork-safe
setting PyTorch's DataLoader workers use); ``torch.set_num_threads`` in the child raises it again.
"""

import os
import sys

from rec_gym.envs import ENV_IDS, register_envs, register_with_rllib

__version__ = "0.1.0"

register_envs()
register_with_rllib()


def _one_torch_thread_after_fork() -> None:
    # A forked child inherits the parent's OpenMP thread pool as data without its threads: GNU OpenMP
    # waits forever in the child's first parallel region once the parent has run one (an async vector
    # env forked after SASRec or an encoder ran). With one thread torch runs its loops inline, as
    # PyTorch's own DataLoader workers do; torch is never imported here for it.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_one_torch_thread_after_fork)



def __getattr__(name: str):
    if name == "Re2LLMEnv":
        from rec_gym.envs.re2llm import Re2LLMEnv

        return Re2LLMEnv
    raise AttributeError(name)


__all__ = ["ENV_IDS", "Re2LLMEnv", "__version__"]
