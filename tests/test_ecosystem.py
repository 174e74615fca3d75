"""Every env id under the RL libraries users already have: Gymnasium's checker and vector envs, tianshou's
Collector, TorchRL's GymEnv, Minari's DataCollector, sb3-contrib's MaskablePPO and PettingZoo's API test.

The libraries beyond the core ones come with the ``eco`` extra; each test skips when its library is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.envs import hint_team_v0

# One id per env class, small enough that a test runs in seconds; the RLRF4Rec recommender trains once per cache.
IDS = {
    "Re2LLM-Synthetic-v0": {"n_train": 40},
    "Re2LLMCompose-Synthetic-v0": {"n_train": 40},
    "RLRF4Rec-Synthetic-v0": {"n_train": 40, "n_texts": 3, "recsys_training": {"epochs": 1}},
}
STEPS = 60


@pytest.fixture(autouse=True)
def shared_cache(tmp_path_factory, monkeypatch):
    # Datasets, observations and the RLRF4Rec recommender are built once for the module.
    path = tmp_path_factory.getbasetemp() / "ecosystem-cache"
    monkeypatch.setenv("REC_GYM_CACHE", str(path))
    return path


def _signature(info: dict) -> dict:
    """Each key's dtype and shape, as a vector env or a dataset stores it."""
    return {key: (np.asarray(value).dtype, np.asarray(value).shape) for key, value in info.items()}


def _masks(infos: dict) -> dict:
    return {key: value for key, value in infos.items() if key.startswith("_")}


@pytest.mark.parametrize("env_id", IDS)
def test_reset_and_step_infos_keep_one_set_of_keys_dtypes_and_shapes(env_id):
    env = gym.make(env_id, **IDS[env_id])
    env.action_space.seed(0)
    _, info = env.reset(seed=0)
    first = _signature(info)
    assert all(np.asarray(v).dtype.kind in "biuf" for v in info.values()), first  # numbers and bools only
    for _ in range(STEPS):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert _signature(info) == first
        if terminated or truncated:
            _, info = env.reset()
            assert _signature(info) == first
    env.close()


# The real-data ids are the same classes with other defaults; run offline on the shared sessions with the
# simulated LLM (their default LLM is a model from a hub) and the hashing encoder.
REAL_IDS = {
    "Re2LLM-Steam-v0": "steam-sessions", "Re2LLMCompose-Steam-v0": "steam-sessions",
    "Re2LLM-ML1M-v0": "ml-latest-small", "Re2LLMCompose-ML1M-v0": "ml-latest-small",
}


@pytest.mark.parametrize("env_id", REAL_IDS)
def test_real_data_ids_keep_the_info_contract_and_pass_check_env(env_id, shared_data):
    folder = REAL_IDS[env_id]
    kwargs = {"data_dir": str(shared_data / folder), "llm": "simulated", "encoder": "hashing", "n_train": 40,
              **({"dataset": "ml-latest-small"} if folder == "ml-latest-small" else {})}
    env = gym.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    env.action_space.seed(0)
    _, info = env.reset(seed=0)
    first = _signature(info)
    assert all(np.asarray(v).dtype.kind in "biuf" for v in info.values()), first
    for _ in range(20):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert _signature(info) == first
        if terminated or truncated:
            assert _signature(env.reset()[1]) == first
    env.close()
    venv = gym.make_vec(env_id, 2, vectorization_mode="sync", **kwargs)
    venv.reset(seed=0)
    for _ in range(10):
        venv.step(venv.action_space.sample())
    venv.close()


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env_passes(env_id):
    env = gym.make(env_id, **IDS[env_id])
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_batches_every_info_for_many_episodes(env_id, mode):
    venv = gym.make_vec(env_id, 2, vectorization_mode=mode, **IDS[env_id])
    venv.action_space.seed(0)
    _, infos = venv.reset(seed=0)
    keys = sorted(infos)
    ended = 0
    for _ in range(STEPS):
        _, _, terminated, truncated, infos = venv.step(venv.action_space.sample())
        # Next-step autoreset: every sub-env reports every key, from its step or from its reset.
        assert sorted(infos) == keys and all(mask.all() for mask in _masks(infos).values())
        ended += int((terminated | truncated).sum())
    assert ended >= STEPS // 4
    venv.close()


@pytest.mark.parametrize("env_id", IDS)
def test_tianshou_collector_collects_steps_and_infos(env_id):
    pytest.importorskip("tianshou")
    from tianshou.algorithm.algorithm_base import Policy
    from tianshou.data import Batch, Collector, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv

    class UniformPolicy(Policy):
        def forward(self, batch, state=None, **kwargs):
            return Batch(act=np.array([self.action_space.sample() for _ in range(len(batch.obs))]))

    envs = DummyVectorEnv([lambda: gym.make(env_id, **IDS[env_id]) for _ in range(2)])
    envs.seed(0)
    policy = UniformPolicy(action_space=envs.action_space[0])
    collector = Collector(policy, envs, VectorReplayBuffer(200, 2))
    collector.reset()
    stats = collector.collect(n_step=STEPS)
    assert stats.n_collected_steps == STEPS and stats.n_collected_episodes >= 1
    stored = collector.buffer.info
    assert np.asarray(stored["session_index"]).shape[0] == len(collector.buffer._meta)
    envs.close()


TORCHRL_SCRIPT = """
import json
import sys

import rec_gym  # registers the ids here and, through the main module, in the spawned workers

if __name__ == "__main__":
    from torchrl.envs import GymEnv  # here only, so that the workers do not import TorchRL
    from torchrl.envs.utils import check_env_specs

    for env_id, kwargs in json.loads(sys.argv[1]).items():
        env = GymEnv(env_id, num_envs=4, **kwargs)
        check_env_specs(env)
        rollout = env.rollout(12, break_when_any_done=False)
        print(json.dumps({"id": env_id, "keys": sorted(rollout["next"].keys()), "batch": list(rollout.batch_size)}))
        env.close()
"""


def test_torchrl_gym_env_with_four_workers_passes_check_env_specs_on_every_id(tmp_path):
    pytest.importorskip("torchrl")
    # A real process under TorchRL's own settings: importing torchrl makes "spawn" the process-wide start
    # method, which must not leak into the other tests. One process for every id pays TorchRL's import once.
    script = tmp_path / "torchrl_check.py"
    script.write_text(textwrap.dedent(TORCHRL_SCRIPT))
    done = subprocess.run([sys.executable, str(script), json.dumps(IDS)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["id"] for r in results] == list(IDS)
    for result in results:  # the infos travel as typed entries beside the observation, per worker and step
        assert {"observation", "reward", "session_index", "rank"} <= set(result["keys"]), result
        assert result["batch"] == [4, 12], result


@pytest.mark.parametrize("env_id", IDS)
def test_minari_records_infos_and_the_dataset_loads(env_id, tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    from minari import DataCollector

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = DataCollector(gym.make(env_id, **IDS[env_id]), record_infos=True)
    env.action_space.seed(0)
    env.reset(seed=0)
    episodes = 0
    while episodes < 5:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            episodes += 1
            env.reset()
    name = env_id.lower().replace("-v0", "")
    env.create_dataset(dataset_id=f"rec_gym/{name}/random-v0", algorithm_name="uniform random", author="rec_gym tests",
                       author_email="tests@example.invalid", code_permalink="https://example.invalid/rec_gym",
                       description="uniformly random actions")
    env.close()
    dataset = minari.load_dataset(f"rec_gym/{name}/random-v0")
    assert dataset.total_episodes == 5
    episode = next(dataset.iterate_episodes())
    info = episode.infos
    assert set(info) == set(gym.make(env_id, **IDS[env_id]).reset(seed=0)[1])
    # One entry per observation: the reset's and every step's.
    assert len(info["session_index"]) == len(episode.observations) == len(episode.actions) + 1


def test_maskable_ppo_trains_on_vectorised_composition_envs_and_never_repeats_a_hint():
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3.common.env_util import make_vec_env

    class RepeatCounter(gym.Wrapper):
        """Counts steps that choose a hint already chosen in the episode (what the mask forbids)."""

        repeats = 0

        def reset(self, **kwargs):
            self.chosen = set()
            return self.env.reset(**kwargs)

        def step(self, action):
            a = int(action)
            RepeatCounter.repeats += a in self.chosen
            self.chosen.add(a) if a else None
            return self.env.step(action)

    venv = make_vec_env("Re2LLMCompose-Synthetic-v0", n_envs=2, seed=0, env_kwargs=IDS["Re2LLMCompose-Synthetic-v0"],
                        wrapper_class=RepeatCounter)
    venv.reset()
    # SB3's vector env reaches the method through gym.make's wrappers and ours (get_wrapper_attr).
    assert get_action_masks(venv).shape == (2, 21)
    model = MaskablePPO("MlpPolicy", venv, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256 and RepeatCounter.repeats == 0
    venv.close()


def test_action_masks_reach_through_gym_make_wrappers():
    env = gym.make("Re2LLMCompose-Synthetic-v0", **IDS["Re2LLMCompose-Synthetic-v0"])
    with pytest.raises(AttributeError):
        env.action_masks()  # Gymnasium 1.x wrappers do not forward attributes: the README names the ways below
    _, info = env.reset(seed=0)
    env.step(4)
    mask = env.get_wrapper_attr("action_masks")()
    assert not mask[4] and mask.sum() == 20
    _, _, _, _, info = env.step(6)
    assert np.array_equal(info["action_mask"], env.get_wrapper_attr("action_masks")()) and not info["action_mask"][6]
    env.close()


def test_native_vector_env_takes_reset_mask_out_of_options_and_episode_statistics_match_sync():
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    counts = {}
    for mode in ("vector_entry_point", "sync"):
        kind = {"autoreset_mode": "Disabled"} if mode == "vector_entry_point" else {
            "vector_kwargs": {"autoreset_mode": "Disabled"}}
        venv = RecordEpisodeStatistics(gym.make_vec("Re2LLM-Synthetic-v0", 4, vectorization_mode=mode, n_train=40,
                                                    sessions_per_episode=2, **kind))
        venv.reset(seed=0)
        rng = np.random.default_rng(0)
        for step in range(100):
            _, _, terminated, truncated, _ = venv.step(rng.integers(21, size=4))
            done = terminated | truncated
            if step == 0:  # sub-env 0 restarts mid-episode, so the sub-envs end their episodes at different steps
                done = np.array([True, False, False, False])
            if done.any():
                options = {"reset_mask": done}
                venv.reset(options=options)
                assert options == {}, mode  # as SyncVectorEnv does
        counts[mode] = (venv.episode_count, sorted(venv.length_queue))
        venv.close()
    assert counts["vector_entry_point"] == counts["sync"] and counts["sync"][0] > 150


def test_team_env_passes_the_parallel_api_test_and_keeps_its_info_signature():
    from pettingzoo.test import parallel_api_test

    parallel_api_test(hint_team_v0.parallel_env(n_train=40), num_cycles=20)
    env = hint_team_v0.parallel_env(n_agents=3, n_train=40)
    _, infos = env.reset(seed=0)
    first = _signature(infos["retriever_0"])
    assert first["hints"] == (np.dtype(np.int64), (3,))
    for seed in range(5):
        _, infos = env.reset(seed=seed)
        assert all(_signature(info) == first for info in infos.values())
        _, _, _, _, infos = env.step({agent: seed for agent in env.agents})
        assert all(_signature(info) == first for info in infos.values())
        assert infos["retriever_0"]["n_hints"] == (seed > 0) and (infos["retriever_0"]["hints"] == -1).sum() == 3 - (seed > 0)
