"""An env's arguments: ``key=value`` text checked against the registered ids, and each value checked by type.

Every command that takes ``--env`` and ``--env-kwargs`` (and ``rec_gym.agents.tasks.make_env``,
the RLlib runner and the benchmark) reads them through here, so an unknown id, an argument the env
does not take and the dataset an env reads are each decided in one place.

Every env constructor and ``reset`` checks its values with the ``check_*`` functions below, so the
rules are the same everywhere: a bool is not an int, ``3.5`` and ``"3"`` are not ints, NumPy integers
are ints. A value of the wrong type raises ``TypeError``, one of the right type but out of range
``ValueError``; each message names the argument, the value and what is accepted.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import warnings
from typing import Any, Iterable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

from rec_gym.data import DATASETS, load_dataset
from rec_gym.data.types import SessionDataset


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
    dataset = arguments.get("dataset", "synthetic")
    if isinstance(dataset, SessionDataset):
        return dataset
    data_dir = arguments.get("data_dir")
    n_candidates, seed, n_train = check_dataset_arguments(dataset, data_dir, arguments.get("n_candidates", 50),
                                                          arguments.get("seed", 0), arguments.get("n_train"))
    return load_dataset(dataset, data_dir, n_candidates=n_candidates, seed=seed, n_train=n_train)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int: an ``int`` or NumPy integer in ``[minimum, maximum]`` (a bound of ``None`` is open).

    Raises ``TypeError`` for a bool, a float (``2.5`` or ``2.0``), a string or anything else, and
    ``ValueError`` for an int out of range; both name ``name`` and ``value``.
    """
    accepted = "an int" + (f" in {minimum}..{maximum}" if minimum is not None and maximum is not None
                           else f" >= {minimum}" if minimum is not None
                           else f" <= {maximum}" if maximum is not None else "")
    if not _is_int(value):
        raise TypeError(f"{name}={value!r} is not an int ({type(value).__name__}); give {accepted}")
    number = int(value)  # type: ignore[arg-type]
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name}={number} is out of range; give {accepted}")
    return number


def check_optional_int(name: str, value: object, minimum: int | None = None) -> int | None:
    """``None``, or ``value`` checked by :func:`check_int` (the message also says ``None`` is accepted)."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"{name}={value!r} is not an int ({type(value).__name__}); give an int"
                        f"{'' if minimum is None else f' >= {minimum}'} or None")
    return check_int(name, value, minimum)


def check_number(name: str, value: object, minimum: float) -> float:
    """``value`` as a float: an int, float or NumPy number, finite and ``>= minimum``, never a bool or a string."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}={value!r} is not a number ({type(value).__name__}); give a number >= {minimum}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise ValueError(f"{name}={value!r} is out of range; give a finite number >= {minimum}")
    return number


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` when it is one of the strings ``choices``; else ``TypeError`` (not a string) or ``ValueError``."""
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r} is not a string ({type(value).__name__}); give one of {tuple(choices)}")
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {tuple(choices)}")
    return value


def check_path(name: str, value: object, *, optional: bool = True) -> None:
    """Raise ``TypeError`` unless ``value`` is a ``str`` or ``os.PathLike`` (or ``None`` when ``optional``)."""
    if (value is None and optional) or isinstance(value, (str, os.PathLike)):
        return
    raise TypeError(f"{name}={value!r} is not a path ({type(value).__name__}); give a str or pathlib.Path"
                    + (" or None" if optional else ""))


def check_mapping(name: str, value: object) -> dict[str, Any]:
    """``value`` (a dict of keyword arguments, or ``None`` read as ``{}``); ``TypeError`` for anything else."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"{name}={value!r} is not a dict of keyword arguments; give a dict with str keys or None")
    return value


def check_dataset_arguments(dataset: object, data_dir: object, n_candidates: object, seed: object,
                            n_train: object) -> tuple[int, int, int | None]:
    """``(n_candidates, seed, n_train)`` as Python ints once the arguments that pick an env's sessions are
    checked by type and range (before any file is read); NumPy integers become ints, so cache keys match."""
    if not isinstance(dataset, (str, os.PathLike, SessionDataset)):
        raise TypeError(f"dataset={dataset!r} is not a dataset name or folder ({type(dataset).__name__}); give one "
                        f"of {DATASETS}, the path of a session folder or a SessionDataset")
    check_path("data_dir", data_dir)
    return (check_int("n_candidates", n_candidates, minimum=2), check_int("seed", seed, minimum=0),
            check_optional_int("n_train", n_train, minimum=1))


def check_reset_options(options: object, accepted: Sequence[str], *, warn_unknown: bool = False) -> dict[str, Any]:
    """``reset``'s ``options``: ``{}`` for ``None``, else the dict itself once every key is in ``accepted``.

    Raises ``TypeError`` when ``options`` is not a dict and ``ValueError`` naming the first key that is
    not accepted, with the accepted ones; with ``warn_unknown`` such keys are said in a ``UserWarning``
    and ignored instead (for PettingZoo, whose API test resets with ``options={"options": 1}``).
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"reset(options={options!r}): options must be a dict or None, with the keys "
                        f"{', '.join(map(repr, accepted))}")
    for key in options:
        if key not in accepted:
            message = f"reset option {key!r} is not accepted; the accepted options are {', '.join(map(repr, accepted))}"
            if not warn_unknown:
                raise ValueError(message)
            warnings.warn(message + " (ignored)", stacklevel=4)  # at the caller of the env's reset
    return options


def check_session_index(value: object, n_sessions: int, split: str) -> int:
    """``options["session_index"]`` as an int row of the split: an int or NumPy integer in ``0..n_sessions-1``."""
    if not _is_int(value):
        raise TypeError(f"options['session_index']={value!r} is not an int ({type(value).__name__}); give an int "
                        f"in 0..{n_sessions - 1}, the session's row in split {split!r}")
    index = int(value)  # type: ignore[arg-type]
    if not 0 <= index < n_sessions:
        raise ValueError(f"options['session_index']={index} is out of range for split {split!r} "
                         f"with {n_sessions} sessions; give an int in 0..{n_sessions - 1}")
    return index
