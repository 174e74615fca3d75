"""RLlib's PPO trains the one-hint env, the composition env and the team (shared and per-agent policies)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ray.rllib", reason="the [rllib] extra is not installed")

SMALL = {"train_batch_size": 64, "minibatch_size": 32, "num_epochs": 1}


@pytest.fixture(scope="module")
def local_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("env_id, env_kwargs, policies", [
    ("Re2LLM-Synthetic-v0", {"n_train": 30}, "shared"),
    ("Re2LLMCompose-Synthetic-v0", {"n_train": 30, "max_hints": 2}, "shared"),
    ("hint_team_v0", {"n_train": 30, "n_agents": 2}, "shared"),
    ("hint_team_v0", {"n_train": 30, "n_agents": 2, "reward_mode": "difference"}, "per_agent"),
])
def test_one_ppo_iteration_samples_and_learns(local_cluster, env_id, env_kwargs, policies):
    from rec_gym.agents.rllib import train

    result, = train(env_id, env_kwargs, iterations=1, policies=policies, progress=False, **SMALL)
    runners = result["env_runners"]
    assert runners["num_env_steps_sampled_lifetime"] >= SMALL["train_batch_size"]
    assert -1.0 <= runners["episode_return_mean"] <= 1.0 * (2 if env_id == "hint_team_v0" else 1)
    modules = set(result["learners"]) - {"__all_modules__"}
    expected = {"default_policy"} if env_id != "hint_team_v0" else (
        {"shared"} if policies == "shared" else {"retriever_0", "retriever_1"})
    assert modules == expected
    for module in modules:
        assert math.isfinite(result["learners"][module]["total_loss"])


def test_a_users_own_config_finds_an_env_by_its_plain_id_in_a_remote_env_runner(local_cluster):
    import rec_gym  # noqa: F401  (what a user's script does; the env runner's process never does)
    from ray.rllib.algorithms.ppo import PPOConfig

    config = (PPOConfig()
              .environment("Re2LLM-Synthetic-v0", env_config={"n_train": 30})
              .env_runners(num_env_runners=1)
              .training(train_batch_size_per_learner=64, minibatch_size=32, num_epochs=1))
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 64


@pytest.mark.parametrize("imports", ["import rec_gym; import ray.tune.registry as registry",
                                     "import ray.tune.registry as registry; import rec_gym"])
def test_the_ids_reach_ray_tunes_registry_whichever_is_imported_first(imports):
    import subprocess
    import sys

    check = (f"{imports}; print(all(registry._global_registry.contains('env_creator', i) "
             "for i in ('Re2LLM-Synthetic-v0', 'Re2LLMCompose-Synthetic-v0', 'RLRF4Rec-Synthetic-v0')))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
