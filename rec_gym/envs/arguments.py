"""An env's arguments as a user writes them: ``key=value`` text, checked against the registered ids.

Every command that takes ``--env`` and ``--env-kwargs`` (and :func:`rec_gym.agents.tasks.make_env`,
the RLlib runner and the benchmark) reads them through here, so an unknown id, an argument the env
does not take and the dataset an env reads are each decided in one place.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Iterable, Sequence

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["llm=simulated", "n_candidates=20"]`` -> ``{"llm": "simulated", "n_candidates": 20}`` (YAML scalars).

    Raises ``ValueError`` for an entry without ``=`` or with an empty key, or a value that is not YAML.
    """
    import yaml

    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--env-kwargs: expected key=value, got {pair!r}")
        try:
            kwargs[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--env-kwargs {pair!r}: the value is not YAML ({getattr(exc, 'problem', None) or exc}); "
                             "quote it for the shell, e.g. 'kb=[\"a hint\"]'") from None
    return kwargs


def check_env_id(env_id: str, also: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` unless ``env_id`` is registered with Gymnasium or one of ``also``.

    A ``"module:Id"`` id passes: Gymnasium imports the module first, which may register it. The
    message names the closest registered id (``difflib``) and where the full list is.
    """
    extra = tuple(also)
    if ":" in env_id or env_id in gym.registry or env_id in extra:
        return
    ours = [name for name in gym.registry if name.startswith(("Re2LLM", "RLRF4Rec"))] + list(extra)
    close = difflib.get_close_matches(env_id, ours + [name for name in gym.registry if name not in ours], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown env id {env_id!r}: {hint}the ids of rec_gym are {', '.join(ours)} "
                     "(`rec-gym envs` lists them with their defaults)")


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the entries of ``env_kwargs`` that the env of ``env_id`` does not accept."""
    name = env_id.rpartition(":")[2]  # "module:Id" ids are made by gym.make after importing the module
    if name not in gym.registry:
        return
    spec = gym.registry[name]
    if not isinstance(spec.entry_point, str):
        return
    parameters = inspect.signature(load_env_creator(spec.entry_point)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(env_kwargs) - set(parameters) - {"self"})
    if unknown:
        accepted = sorted(name for name in parameters if name != "self")
        raise ValueError(f"{env_id} has no argument(s) {', '.join(unknown)}; it accepts {', '.join(accepted)}")


def env_arguments(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Everything the env of ``env_id`` would receive: its registered kwargs overridden by ``env_kwargs``.

    Raises ``ValueError`` for an unknown id or an argument the env does not take.
    """
    check_env_id(env_id)
    check_env_kwargs(env_id, env_kwargs)
    return {**(gym.spec(env_id).kwargs or {}), **env_kwargs}


def load_env_dataset(arguments: dict[str, Any]) -> Any:
    """The :class:`~rec_gym.data.types.SessionDataset` an env with these arguments (:func:`env_arguments`) reads."""
    from rec_gym.data import load_dataset
    from rec_gym.data.types import SessionDataset

    dataset = arguments.get("dataset", "synthetic")
    if isinstance(dataset, SessionDataset):
        return dataset
    return load_dataset(dataset, arguments.get("data_dir"), n_candidates=int(arguments.get("n_candidates", 50)),
                        seed=int(arguments.get("seed", 0)), n_train=arguments.get("n_train"))
