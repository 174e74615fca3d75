"""Env kwargs, reset options and actions are checked by type in every env family.

A bool is not an int, ``3.5`` and ``"3"`` are not ints, NumPy integers are ints; unknown reset options
are refused; ``step`` takes what ``Discrete.contains`` takes, bools aside. Each refusal is a
``TypeError`` or ``ValueError`` whose message names the bad value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.envs import hint_team_v0
from rec_gym.envs.arguments import check_int, check_reset_options
from rec_gym.envs.vector import Re2LLMVectorEnv

SMALL = {"n_train": 40}  # 40 training sessions: every env family builds in well under a second


@dataclass
class Family:
    """How to make, reset and step one env family, so that every probe runs on each the same way."""

    make: Callable[..., Any]
    count_kwargs: tuple[str, ...]  # the int kwargs of the env itself (not of its task)
    step: Callable[[Any, Any], Any]  # (env, one action) -> the step's result
    accepted_options: tuple[str, ...] = ("session_index",)

    def reset(self, env: Any, **kwargs: Any) -> tuple[Any, Any]:
        return env.reset(**kwargs)

    def session_of(self, info: Any) -> int:
        if "session_index" in info:  # a Gymnasium info dict, single or batched
            return int(np.asarray(info["session_index"]).flat[0])
        return int(next(iter(info.values()))["session_index"])  # PettingZoo: one info per agent


FAMILIES = {
    "Re2LLM-Synthetic-v0": Family(lambda **kw: gym.make("Re2LLM-Synthetic-v0", **{**SMALL, **kw}),
                                  ("sessions_per_episode",), lambda env, a: env.step(a)),
    "Re2LLMCompose-Synthetic-v0": Family(lambda **kw: gym.make("Re2LLMCompose-Synthetic-v0", **{**SMALL, **kw}),
                                         ("max_hints",), lambda env, a: env.step(a)),
    "RLRF4Rec-Synthetic-v0": Family(lambda **kw: gym.make("RLRF4Rec-Synthetic-v0", **{
        **SMALL, "n_texts": 3, "recsys_training": {"epochs": 1}, **kw}), ("sessions_per_episode", "n_texts"),
        lambda env, a: env.step(a)),
    "hint_team_v0": Family(lambda **kw: hint_team_v0.parallel_env(**{**SMALL, **kw}), ("n_agents",),
                           lambda env, a: env.step({agent: a for agent in env.agents})),
    "Re2LLMVectorEnv": Family(lambda **kw: gym.make_vec("Re2LLM-Synthetic-v0", **{
        "num_envs": 2, "vectorization_mode": "vector_entry_point", **SMALL, **kw}), ("num_envs", "sessions_per_episode"),
        lambda env, a: env.step([a, a]), accepted_options=("session_index", "reset_mask")),
}


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> str:
    """A cache that the module's tests share, so that each dataset and recommender is built once."""
    return str(tmp_path_factory.mktemp("strict_cache"))


@pytest.fixture(scope="module")
def built(module_cache) -> dict[str, Any]:
    """One env of each family, made once for the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REC_GYM_CACHE", module_cache)
        return {name: family.make() for name, family in FAMILIES.items()}


def names(value: Any, exc: pytest.ExceptionInfo) -> bool:
    return repr(value) in str(exc.value)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("index", [3.5, 3.0, "3", True, np.True_, np.array(3)])
def test_a_session_index_that_is_not_an_int_is_refused(built, family, index):
    with pytest.raises(TypeError, match=r"options\['session_index'\]") as exc:
        FAMILIES[family].reset(built[family], options={"session_index": index})
    assert names(index, exc)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("options", ["x", ["session_index"], 3])
def test_options_that_are_not_a_dict_are_refused(built, family, options):
    with pytest.raises(TypeError, match="options must be a dict or None") as exc:
        FAMILIES[family].reset(built[family], options=options)
    assert names(options, exc)


@pytest.mark.parametrize("family", [name for name in FAMILIES if name != "hint_team_v0"])
def test_an_unknown_option_key_is_refused_naming_it_and_the_accepted_ones(built, family):
    with pytest.raises(ValueError) as exc:
        FAMILIES[family].reset(built[family], options={"session_index": 0, "start": 1})
    message = str(exc.value)
    assert "\n" not in message and "'start'" in message
    assert message.endswith("the accepted options are " + ", ".join(map(repr, FAMILIES[family].accepted_options)))


def test_the_team_env_says_an_unknown_option_key_and_ignores_it_as_pettingzoos_api_test_requires(built):
    # pettingzoo.test.api_test and parallel_api_test reset with options={"options": 1} and expect no error.
    with pytest.warns(UserWarning, match=r"^reset option 'start' is not accepted; the accepted options are "
                                         r"'session_index' \(ignored\)$"):
        _, infos = built["hint_team_v0"].reset(options={"session_index": 6, "start": 1})
    assert FAMILIES["hint_team_v0"].session_of(infos) == 6


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("action", [True, np.True_, 3.0, np.float64(3.0), "3", np.array([3]), None])
def test_step_refuses_what_is_not_an_integer_action(built, family, action):
    env = built[family]
    FAMILIES[family].reset(env, seed=0)
    with pytest.raises(ValueError) as exc:
        FAMILIES[family].step(env, action)
    assert names(action, exc)


@pytest.mark.parametrize("family", FAMILIES)
def test_step_refuses_an_int_out_of_range_naming_the_range(built, family):
    env = built[family]
    FAMILIES[family].reset(env, seed=0)
    n = int((env.single_action_space if family == "Re2LLMVectorEnv" else
             env.action_space(env.agents[0]) if family == "hint_team_v0" else env.action_space).n)
    with pytest.raises(ValueError) as exc:
        FAMILIES[family].step(env, n)
    message = str(exc.value)
    assert f"0..{n - 1}" in message and re.search(rf"\b{n}\b", message.replace(f"0..{n - 1}", ""))


INT_KWARGS = [(family, kwarg) for family, spec in FAMILIES.items()
              for kwarg in (*spec.count_kwargs, "n_train", "n_candidates", "seed")]


@pytest.mark.parametrize("family, kwarg", INT_KWARGS)
@pytest.mark.parametrize("value", [2.5, 2.0, "3", True])
def test_an_int_kwarg_that_is_not_an_int_is_refused(family, kwarg, value):
    with pytest.raises(TypeError) as exc:
        FAMILIES[family].make(**{kwarg: value})
    assert f"{kwarg}={value!r} is not an int" in str(exc.value)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kwarg, value, error", [
    ("split", 1, TypeError), ("split", "dev", ValueError), ("data_dir", 5, TypeError),
    ("n_candidates", 1, ValueError), ("seed", -1, ValueError), ("n_train", 0, ValueError),
])
def test_other_kwargs_are_checked_by_type_and_range(family, kwarg, value, error):
    with pytest.raises(error) as exc:
        FAMILIES[family].make(**{kwarg: value})
    assert f"{kwarg}={value!r}" in str(exc.value)


@pytest.mark.parametrize("family, kwarg", [("Re2LLM-Synthetic-v0", "llm_kwargs"), ("Re2LLMVectorEnv", "llm_kwargs"),
                                           ("hint_team_v0", "llm_kwargs"), ("RLRF4Rec-Synthetic-v0", "writer_kwargs"),
                                           ("RLRF4Rec-Synthetic-v0", "recsys_training")])
def test_a_kwargs_dict_that_is_not_a_dict_is_refused(family, kwarg):
    with pytest.raises(TypeError, match=re.escape(f"{kwarg}=[1] is not a dict")):
        FAMILIES[family].make(**{kwarg: [1]})


@pytest.mark.parametrize("family", FAMILIES)
def test_numpy_integers_are_ints_everywhere(monkeypatch, module_cache, family):
    monkeypatch.setenv("REC_GYM_CACHE", module_cache)
    spec = FAMILIES[family]
    env = spec.make(**{spec.count_kwargs[0]: np.int64(2), "n_train": np.int64(40), "seed": np.int32(0),
                       "n_candidates": np.int16(50)})
    _, info = spec.reset(env, options={"session_index": np.int32(3)})
    assert spec.session_of(info) == 3
    spec.reset(env, options={"session_index": np.uint8(4)})
    step = spec.step(env, np.int64(2))
    assert spec.session_of(step[-1]) == 4
    spec.reset(env, seed=0)
    spec.step(env, np.array(1, dtype=np.int32))  # a 0-d integer array, as Discrete.contains takes it


def test_the_vector_env_takes_one_session_index_per_sub_env_and_refuses_bools_among_them(built):
    venv = built["Re2LLMVectorEnv"]
    _, info = venv.reset(options={"session_index": np.array([5, 6], dtype=np.int32)})
    assert info["session_index"].tolist() == [5, 6]
    _, info = venv.reset(options={"session_index": [7, np.int64(8)]})
    assert info["session_index"].tolist() == [7, 8]
    for starts, named in (([7, True], "True"), ([7, 8.0], "8.0"), (np.array([7.0, 8.0]), "np.float64(7.0)")):
        with pytest.raises(TypeError, match=re.escape(f"options['session_index']={named} is not an int")):
            venv.reset(options={"session_index": starts})
    with pytest.raises(ValueError, match=r"\[True, 1\]"):
        venv.step([True, 1])
    venv.reset(options={"reset_mask": np.array([True, False])})  # Gymnasium's option stays accepted


def test_the_checks_bear_the_arguments_names_and_what_they_accept():
    assert check_int("k", np.int8(3), 1, 5) == 3 and type(check_int("k", np.int8(3))) is int
    with pytest.raises(ValueError, match=r"^k=9 is out of range; give an int in 1\.\.5$"):
        check_int("k", 9, 1, 5)
    with pytest.raises(TypeError, match=r"^k=False is not an int \(bool\); give an int >= 0$"):
        check_int("k", False, minimum=0)
    assert check_reset_options(None, ("a",)) == {}
