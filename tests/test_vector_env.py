"""The native vector env returns what gymnasium's SyncVectorEnv over single envs returns, in every autoreset mode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.envs.re2llm import Re2LLMEnv
from rec_gym.envs.vector import Re2LLMVectorEnv
from rec_gym.llm.simulated import SimulatedLLM

N_ENVS = 5
KWARGS = {"encoder": "hashing", "observation": "profile", "n_train": 40}


class UnrankedForSomeHints(SimulatedLLM):
    """The simulator, except that prompts with a hint of a length divisible by 3 get a reply that ranks nothing."""

    def rank(self, requests):
        rankings = super().rank(requests)
        return [None if r.hint and len(r.hint) % 3 == 0 else ranking for r, ranking in zip(requests, rankings)]


def assert_same(ours, theirs, where):
    """Equal batched values: same keys, dtypes and entries, recursing into dicts and object arrays."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(theirs), f"{where}: keys {sorted(ours)} != {sorted(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
        return
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, \
        f"{where}: {ours.dtype} {ours.shape} != {theirs.dtype} {theirs.shape}"
    if theirs.dtype == object:
        for k, (x, y) in enumerate(zip(ours, theirs)):
            if isinstance(y, np.ndarray):
                assert isinstance(x, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y), f"{where}[{k}]"
            else:
                assert type(x) is type(y) and x == y, f"{where}[{k}]: {x!r} != {y!r}"
    else:
        assert np.array_equal(ours, theirs), f"{where}: {ours} != {theirs}"


def side_by_side(mode, n_steps, sessions_per_episode=1, reward="ndcg_gain", llm=None, seed=11):
    kwargs = dict(KWARGS, sessions_per_episode=sessions_per_episode, reward=reward)
    ours = Re2LLMVectorEnv(num_envs=N_ENVS, autoreset_mode=mode, llm=llm or "simulated", **kwargs)
    theirs = SyncVectorEnv([lambda: Re2LLMEnv(llm=llm or "simulated", **kwargs) for _ in range(N_ENVS)],
                           autoreset_mode=mode)
    assert ours.metadata["autoreset_mode"] == theirs.metadata["autoreset_mode"] == AutoresetMode(mode)
    assert ours.observation_space == theirs.observation_space and ours.action_space == theirs.action_space
    for name, a, b in zip(("obs", "info"), ours.reset(seed=seed), theirs.reset(seed=seed)):
        assert_same(a, b, f"reset {name}")
    rng = np.random.default_rng(seed)
    ended = 0
    for step in range(n_steps):
        actions = rng.integers(ours.single_action_space.n, size=N_ENVS)
        actions[rng.random(N_ENVS) < 0.25] = 0  # plenty of the free no-hint action
        a, b = ours.step(actions), theirs.step(actions)
        for name, x, y in zip(("obs", "reward", "terminated", "truncated", "info"), a, b):
            assert_same(x, y, f"step {step} {name}")
        done = a[2] | a[3]
        ended += int(done.sum())
        if AutoresetMode(mode) == AutoresetMode.DISABLED and done.any():
            # Half the time with a fresh seed for those sub-envs, half the time continuing their generators.
            seeds = [int(s) for s in rng.integers(1000, size=N_ENVS)] if step % 2 else None
            options = {"reset_mask": done.copy()}
            for name, x, y in zip(("obs", "info"), ours.reset(seed=seeds, options=dict(options)),
                                  theirs.reset(seed=seeds, options=dict(options))):
                assert_same(x, y, f"reset after step {step} {name}")
    ours.close()
    theirs.close()
    return ours, ended


@pytest.mark.parametrize("mode", ["NextStep", "SameStep", "Disabled"])
def test_one_step_episodes_match_sync_vector_env_over_single_envs(mode):
    _, ended = side_by_side(mode, 400)
    assert ended >= 400 * N_ENVS // 2


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
def test_longer_episodes_match_sync_vector_env_over_single_envs(mode):
    side_by_side(mode, 300, sessions_per_episode=3)


@pytest.mark.parametrize("reward", ["ndcg", "hit"])
def test_other_reward_modes_and_unranked_replies_match_sync_vector_env(reward):
    side_by_side("SameStep", 200, reward=reward, llm=UnrankedForSomeHints())


def test_unranked_replies_under_ndcg_gain_match_sync_vector_env():
    ours, _ = side_by_side("NextStep", 300, llm=UnrankedForSomeHints())
    assert (ours.task.table.ranks == -2).any()  # some replies really ranked nothing


def test_seed_list_and_session_index_option_match_sync_vector_env():
    ours = Re2LLMVectorEnv(num_envs=3, **KWARGS)
    theirs = SyncVectorEnv([lambda: Re2LLMEnv(**KWARGS) for _ in range(3)])
    for name, a, b in zip(("obs", "info"), ours.reset(seed=[4, None, 9]), theirs.reset(seed=[4, None, 9])):
        if name == "info":  # the unseeded sub-env draws from fresh entropy: compare the seeded ones
            a, b = a["session_index"][[0, 2]], b["session_index"][[0, 2]]
            assert_same(a, b, "seeded sessions")
    obs, info = ours.reset(options={"session_index": 7})
    obs2, info2 = theirs.reset(options={"session_index": 7})
    assert_same(obs, obs2, "obs")
    assert_same(info, info2, "info")
    assert info["session_index"].tolist() == [7, 7, 7]


def test_session_index_option_may_give_one_session_per_sub_env():
    venv = Re2LLMVectorEnv(num_envs=3, **KWARGS)
    obs, info = venv.reset(options={"session_index": [5, 0, 39]})
    assert info["session_index"].tolist() == [5, 0, 39]
    assert np.array_equal(obs, venv.task.observations[[5, 0, 39]])
    _, _, _, _, infos = venv.step(np.array([1, 2, 3]))
    assert infos["session_index"].tolist() == [5, 0, 39]
    assert infos["rank"].tolist() == [venv.task.rank(5, 1), venv.task.rank(0, 2), venv.task.rank(39, 3)]


def test_session_index_in_info_is_the_session_whose_observation_is_returned():
    venv = Re2LLMVectorEnv(num_envs=4, autoreset_mode="SameStep", **KWARGS)
    venv.reset(seed=0)
    for _ in range(20):
        obs, _, terminated, _, infos = venv.step(np.array([0, 1, 2, 3]))
        assert terminated.all()
        assert np.array_equal(obs, venv.task.observations[infos["session_index"]])
        assert np.array_equal(np.stack(infos["final_obs"]), venv.task.observations[infos["final_info"]["session_index"]])


@pytest.mark.parametrize("mode", ["NextStep", "SameStep", "Disabled"])
def test_make_vec_builds_the_native_env_in_each_autoreset_mode(mode):
    venv = gym.make_vec("Re2LLM-Synthetic-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        autoreset_mode=mode, n_train=40)
    assert isinstance(venv.unwrapped, Re2LLMVectorEnv)
    assert venv.metadata["autoreset_mode"] == AutoresetMode(mode)
    assert Re2LLMVectorEnv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP  # the class default is untouched


def test_normalize_observation_and_episode_statistics_wrappers_run_on_it():
    from gymnasium.wrappers.vector import NormalizeObservation, RecordEpisodeStatistics

    venv = RecordEpisodeStatistics(NormalizeObservation(
        gym.make_vec("Re2LLM-Synthetic-v0", num_envs=8, vectorization_mode="vector_entry_point", n_train=40,
                     sessions_per_episode=2)))
    obs, _ = venv.reset(seed=0)
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(200):
        obs, rewards, terminated, truncated, infos = venv.step(rng.integers(21, size=8))
        if "episode" in infos:
            lengths = infos["episode"]["l"][infos["_episode"]]
            assert (lengths == 2).all()
            episodes += len(lengths)
    assert episodes == 8 * 67  # two steps, then a reset step: episodes end at steps 2, 5, ..., 199
    assert abs(float(obs.mean())) < 1.0 and 0.3 < float(obs.std()) < 3.0  # normalised, not raw [0, 1] profiles


def test_disabled_autoreset_refuses_to_step_a_finished_sub_env():
    venv = Re2LLMVectorEnv(num_envs=2, autoreset_mode=AutoresetMode.DISABLED, **KWARGS)
    venv.reset(seed=0)
    venv.step(np.array([1, 2]))
    with pytest.raises(RuntimeError, match=r"sub-envs \[0, 1\] ended.*reset_mask"):
        venv.step(np.array([1, 2]))
    venv.reset(options={"reset_mask": np.array([True, False])})
    with pytest.raises(RuntimeError, match=r"sub-envs \[1\] ended"):
        venv.step(np.array([1, 2]))


@pytest.mark.parametrize("kwargs, message", [
    ({"options": {"session_index": 40}}, r"options\['session_index'\]=40 is out of range for split 'train' with 40"),
    ({"options": {"start": 1}}, r"reset option 'start' is not accepted; the accepted options are 'session_index', 'reset_mask'"),
    ({"options": {"reset_mask": [True, False]}}, r"reset_mask'\] must be a bool NumPy array of shape \(2,\)"),
    ({"options": {"reset_mask": np.zeros(2, dtype=bool)}}, "selects no sub-env"),
    ({"seed": [1, 2, 3]}, r"one seed per sub-env: num_envs=2, got 3"),
])
def test_bad_reset_arguments_name_the_value(kwargs, message):
    venv = Re2LLMVectorEnv(num_envs=2, **KWARGS)
    with pytest.raises(ValueError, match=message):
        venv.reset(**kwargs)


def test_unknown_autoreset_mode_lists_the_modes():
    with pytest.raises(ValueError, match=r"autoreset_mode='sometimes' is not one of \['NextStep', 'SameStep', 'Disabled'\]"):
        Re2LLMVectorEnv(num_envs=2, autoreset_mode="sometimes", **KWARGS)


def test_hint_set_columns_of_a_shared_table_do_not_keep_the_env_looking_for_unknown_entries(tmp_path):
    from rec_gym.envs.compose import Re2LLMComposeEnv

    path = tmp_path / "table.npz"
    compose = Re2LLMComposeEnv(max_hints=2, feedback_table=path, **KWARGS)  # adds hint-set columns to the file
    for session in range(3):
        compose.reset(options={"session_index": session})
        compose.step(3)
        compose.step(5)
    compose.close()
    venv = Re2LLMVectorEnv(num_envs=2, feedback_table=path, **KWARGS)
    assert venv.task.table.ranks.shape[1] > venv.task.n_actions  # the composition's columns are in the table
    assert venv._complete is False  # its one-hint columns are not filled yet
    venv.task.fill_all(progress=False)
    assert not venv.task.table.complete  # the hint-set columns stay unfilled for most sessions
    venv.reset(seed=0)
    venv.step(np.array([1, 2]))
    assert venv._complete is True  # no more looking for unknown entries on each step
    again = Re2LLMVectorEnv(num_envs=2, feedback_table=path, **KWARGS)
    assert again._complete is True
