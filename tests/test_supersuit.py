"""SuperSuit's standard recipe (a PettingZoo parallel env -> a vector env -> concatenated copies) trains
Stable-Baselines3's PPO on ``hint_team_v0``; the copies' answers reach the shared table file."""

from __future__ import annotations

import numpy as np
import pytest

supersuit = pytest.importorskip("supersuit", reason="the [zoo] extra is not installed")

from stable_baselines3 import PPO  # noqa: E402

from rec_gym.envs import hint_team_v0  # noqa: E402
from rec_gym.feedback.table import FeedbackTable  # noqa: E402


@pytest.mark.parametrize("num_cpus", [0, 1])
def test_ppo_trains_on_the_team_through_supersuits_vector_envs(tmp_path, num_cpus):
    path = tmp_path / "table.npz"
    team = hint_team_v0.parallel_env(n_agents=2, n_train=30, feedback_table=path)
    venv = supersuit.concat_vec_envs_v1(supersuit.pettingzoo_env_to_vec_env_v1(team), 2, num_cpus=num_cpus,
                                        base_class="stable_baselines3")
    assert venv.num_envs == 4  # 2 copies x 2 retrievers
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, device="cpu").learn(128)
    copies = [vec.par_env.task.table for vec in venv.venv.vec_envs] if num_cpus == 0 else []
    venv.close()
    assert model.num_timesteps == 128
    # The original never stepped: the file holds what the copies answered, every entry of each.
    on_disk = FeedbackTable.load(path)
    assert on_disk.n_known > 0
    for table in copies:
        known = table.ranks != -1
        assert known.any()
        assert np.array_equal(on_disk.ranks[:, [on_disk.column(c) for c in table.columns]][known], table.ranks[known])
