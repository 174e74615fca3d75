"""The Re2LLM environment: Gymnasium/SB3 API conformance, seeding, rewards, feedback table, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import rec_gym
from conftest import write_session_folder
from rec_gym.envs.re2llm import Re2LLMEnv
from rec_gym.feedback.table import ProvenanceMismatch
from rec_gym.llm.simulated import SimulatedLLM


class CountingLLM(SimulatedLLM):
    """The simulator, counting how many requests reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def rank(self, requests):
        self.calls += len(requests)
        return super().rank(requests)

    def target_ranks(self, dataset, rows, hints, chunk=2048):
        self.calls += len(rows) * len(hints)
        return super().target_ranks(dataset, rows, hints, chunk)


@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    # Datasets and item embeddings are expensive to build; the env tests share one cache.
    path = tmp_path_factory.getbasetemp() / "env-cache"
    monkeypatch.setenv("REC_GYM_CACHE", str(path))
    return path


@pytest.fixture
def ml1m_dir(tmp_path, shared_data):
    """The real ML-1M movies.dat beside a ratings.dat written in ML-1M's exact format (900 sessions)."""
    import shutil

    folder = tmp_path / "ml-1m"
    folder.mkdir()
    shutil.copy(shared_data / "ml-1m-catalog" / "movies.dat", folder / "movies.dat")
    movie_ids = [int(line.split(b"::")[0]) for line in (folder / "movies.dat").read_bytes().splitlines() if line]
    rng = np.random.default_rng(0)
    lines = []
    for user in range(1, 301):
        for day in range(3):
            start = 978_300_000 + day * 86_400 + 3_600
            for k, movie in enumerate(rng.choice(movie_ids, size=6, replace=False)):
                lines.append(f"{user}::{movie}::{rng.integers(1, 6)}::{start + 60 * k}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return folder


@pytest.fixture
def session_folder(tmp_path):
    """A tiny custom dataset in the session-folder format: 60 items, 40 sessions."""
    genres = ["Comedy", "Drama", "Horror", "Sci-Fi"]
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": [genres[i % 4]]}
             for i in range(60)]
    return write_session_folder(tmp_path / "tiny", items)


def test_importing_rec_gym_registers_every_id():
    for env_id in ("Re2LLM-ML1M-v0", "Re2LLM-Steam-v0", "Re2LLM-Synthetic-v0"):
        assert env_id in gym.registry
        assert gym.registry[env_id].vector_entry_point == "rec_gym.envs.vector:Re2LLMVectorEnv"


def test_synthetic_env_passes_gymnasium_and_sb3_checks_with_no_arguments(shared_cache):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("Re2LLM-Synthetic-v0")
    assert env.action_space == gym.spaces.Discrete(21)
    assert env.observation_space.shape == (15,)  # the session profile
    gym_check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped, warn=True)


def test_ml1m_env_passes_checks_on_ratings_in_the_official_format(shared_cache, ml1m_dir):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("Re2LLM-ML1M-v0", data_dir=str(ml1m_dir), llm="simulated", encoder="hashing")
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert env.unwrapped.task.session_id(info["session_index"])


def test_steam_env_passes_checks_on_the_real_sessions(shared_cache, shared_data):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("Re2LLM-Steam-v0", data_dir=str(shared_data / "steam-sessions"), llm="simulated",
                   encoder="hashing", split="val")
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    assert env.unwrapped.task.n_sessions == 1194
    assert "purchased the following video games" in env.unwrapped.task.prompt(0, 0)


def test_same_seed_gives_same_observations_and_rewards(shared_cache):
    def rollout(seed):
        env = gym.make("Re2LLM-Synthetic-v0")
        obs, _ = env.reset(seed=seed)
        out = [obs]
        rng = np.random.default_rng(7)
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(21)))
            out.append(np.append(obs, [reward, info["session_index"]]))
            if terminated:
                obs, _ = env.reset()
                out.append(obs)
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_action_zero_rewards_exactly_zero_and_calls_no_llm(shared_cache):
    llm = CountingLLM()
    env = Re2LLMEnv(llm=llm, encoder="hashing")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(0)
    assert reward == 0.0 and llm.calls == 0
    assert terminated and not truncated
    assert info["rank"] == info["baseline_rank"] == -1 and info["rank_known"] is False


def test_ndcg_gain_reward_is_the_difference_of_ndcg_with_and_without_the_hint(shared_cache):
    env = Re2LLMEnv(encoder="hashing")
    env.reset(seed=1)
    _, reward, _, _, info = env.step(6)
    ndcg = lambda r: 1 / np.log2(r + 1) if 1 <= r <= 10 else 0.0
    assert reward == pytest.approx(ndcg(info["rank"]) - ndcg(info["baseline_rank"]))
    assert info["ndcg"] == pytest.approx(ndcg(info["rank"]))
    assert env.task.kb.hint_for_action(6) == env.task.kb[5] and info["rank"] == env.task.rank(info["session_index"], 6)


@pytest.mark.parametrize("mode", ["ndcg", "hit"])
def test_other_reward_modes(shared_cache, mode):
    env = Re2LLMEnv(encoder="hashing", reward=mode)
    rewards, infos = [], []
    for s in range(30):
        env.reset(options={"session_index": s})
        _, reward, _, _, info = env.step(0)
        rewards.append(reward)
        infos.append(info)
    expected = [i["ndcg"] if mode == "ndcg" else float(1 <= i["rank"] <= 10) for i in infos]
    assert rewards == pytest.approx(expected)
    assert max(rewards) > 0  # action 0 is no longer free of an LLM call: it is a real prompt


def test_hint_rank_matches_the_simulator_directly(shared_cache):
    env = Re2LLMEnv(encoder="hashing")
    env.reset(options={"session_index": 5})
    _, _, _, _, info = env.step(3)
    task = env.task
    request = task.table.request(task.dataset, 5).with_hint(task.kb[2])
    ranking = SimulatedLLM().rank([request])[0]
    target_pos = task.dataset.target_pos[task.rows[5]]
    assert info["rank"] == ranking.index(target_pos) + 1


def test_feedback_table_is_persisted_and_reused_by_the_next_env(shared_cache, session_folder):
    first = CountingLLM()
    env = Re2LLMEnv(dataset=str(session_folder), llm=first, encoder="hashing")
    for s in range(10):
        env.reset(options={"session_index": s})
        env.step(4)
    env.close()
    assert first.calls == 20  # hint 4 and the no-hint baseline of 10 sessions
    second = CountingLLM()
    env2 = Re2LLMEnv(dataset=str(session_folder), llm=second, encoder="hashing")
    for s in range(10):
        env2.reset(options={"session_index": s})
        env2.step(4)
    assert second.calls == 0
    assert env2.task.table.path == env.task.table.path


def test_a_table_made_for_another_knowledge_base_is_refused(shared_cache, session_folder, tmp_path):
    path = tmp_path / "table.npz"
    env = Re2LLMEnv(dataset=str(session_folder), encoder="hashing", feedback_table=path)
    env.reset(seed=0)
    env.step(1)
    env.close()
    with pytest.raises(ProvenanceMismatch, match="kb_hash"):
        Re2LLMEnv(dataset=str(session_folder), encoder="hashing", feedback_table=path, kb=["Prefer comedies."])


def test_out_of_range_action_names_the_valid_range(shared_cache):
    env = gym.make("Re2LLM-Synthetic-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 21 is out of range: valid actions are 0\.\.20"):
        env.step(21)
    with pytest.raises(ValueError, match=r"action 1\.5 is not an int: valid actions are 0\.\.20"):
        env.unwrapped.step(1.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"reward": "mrr"}, "reward='mrr' is not one of"),
    ({"split": "dev"}, "split='dev' is not one of"),
    ({"dataset": "movielens-2m"}, "movielens-2m"),
    ({"encoder": "bert"}, "unknown encoder='bert'"),
    ({"llm": "gpt"}, "unknown llm='gpt'"),
    ({"sessions_per_episode": 0}, "sessions_per_episode=0 is out of range; give an int >= 1"),
])
def test_bad_kwargs_raise_errors_naming_the_value(shared_cache, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        gym.make("Re2LLM-Synthetic-v0", **kwargs)


def test_unknown_kwarg_is_rejected(shared_cache):
    with pytest.raises(TypeError, match="bogus"):
        gym.make("Re2LLM-Synthetic-v0", bogus=1)


def test_sessions_per_episode_walks_sessions_then_terminates(shared_cache):
    env = Re2LLMEnv(encoder="hashing", sessions_per_episode=3)
    env.reset(options={"session_index": 10})
    seen = []
    for step in range(3):
        _, _, terminated, truncated, info = env.step(1)
        seen.append(info["session_index"])
        assert terminated == (step == 2) and not truncated
    assert seen == [10, 11, 12]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)


def test_ansi_render_shows_prompt_hint_and_ranking(shared_cache):
    env = gym.make("Re2LLM-Synthetic-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(2)
    text = env.render()
    assert "I watched the following movies in order:" in text
    assert "Hint: " + env.unwrapped.task.kb[1] in text
    assert "LLM top 10:" in text and text.count("\n") >= 14


def test_vector_env_gives_the_single_env_rewards_for_the_same_sessions(shared_cache):
    venv = gym.make_vec("Re2LLM-Synthetic-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        autoreset_mode="SameStep")
    obs, info = venv.reset(seed=0)
    actions = np.arange(16) % 21
    next_obs, rewards, terminated, truncated, infos = venv.step(actions)
    assert obs.shape == (16, 15) and terminated.all() and not truncated.any()
    single = Re2LLMEnv(encoder="hashing", observation="profile")
    for k in range(16):
        o, _ = single.reset(options={"session_index": int(info["session_index"][k])})
        assert np.array_equal(o, obs[k])
        _, r, _, _, step_info = single.step(int(actions[k]))
        assert rewards[k] == pytest.approx(r)
        assert infos["final_info"]["rank"][k] == step_info["rank"]
    assert np.array_equal(np.stack(infos["final_obs"]), obs)


def test_info_keys_keep_one_type_over_every_step(shared_cache, session_folder, tmp_path):
    class UnrankedForEvenHints(SimulatedLLM):
        def rank(self, requests):
            return [None if r.hint and len(r.hint) % 2 == 0 else ranking
                    for r, ranking in zip(requests, super().rank(requests))]

    expected = {"session_index": int, "rank": int, "baseline_rank": int, "rank_known": bool, "ndcg": float,
                "hit": float, "no_ranking": bool}
    seen = {"unranked": False, "action 0": False, "ranked": False}
    for reward in ("ndcg_gain", "ndcg", "hit"):
        # A table of its own: the cache's table of this dataset holds the plain simulator's answers.
        env = Re2LLMEnv(dataset=str(session_folder), llm=UnrankedForEvenHints(), encoder="hashing", reward=reward,
                        feedback_table=tmp_path / "table.npz")
        _, info = env.reset(seed=0)
        assert {key: type(value) for key, value in info.items()} == expected
        assert (info["rank"], info["baseline_rank"], info["rank_known"], info["no_ranking"]) == (-1, -1, False, False)
        for step in range(120):
            action = step % 21
            _, _, terminated, _, info = env.step(action)
            assert {key: type(value) for key, value in info.items()} == expected
            assert info["rank"] >= -1 and info["baseline_rank"] >= -1
            assert info["rank_known"] == (info["rank"] != -1) == (reward != "ndcg_gain" or action != 0)
            seen["unranked"] |= info["no_ranking"]
            seen["action 0"] |= action == 0
            seen["ranked"] |= 1 <= info["rank"] <= 10
            if terminated:
                _, info = env.reset()
                assert {key: type(value) for key, value in info.items()} == expected
        env.close()
    assert all(seen.values()), seen


def test_minilm_observation_is_the_mean_of_item_embeddings(shared_cache, session_folder):
    from rec_gym.data.embeddings import SentenceEncoder

    env = Re2LLMEnv(dataset=str(session_folder), encoder="minilm")
    assert env.observation_space.shape == (384,)
    obs, info = env.reset(options={"session_index": 0})
    task = env.task
    items = [task.dataset.catalog[i].text() for i in task.dataset.history_of(int(task.rows[0]))]
    expected = SentenceEncoder("minilm").encode(items).mean(axis=0)
    np.testing.assert_allclose(obs, expected, atol=1e-5)


def test_real_data_ids_default_to_the_pinned_model_and_say_how_to_run_offline(shared_cache, ml1m_dir, monkeypatch):
    from rec_gym.llm.hf import DEFAULT_HF_MODEL

    assert gym.spec("Re2LLM-ML1M-v0").kwargs["llm"] == DEFAULT_HF_MODEL
    assert "@" in DEFAULT_HF_MODEL  # a pinned revision, so that -v0 names one environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match='llm="simulated"'):
        gym.make("Re2LLM-ML1M-v0", data_dir=str(ml1m_dir), encoder="hashing",
                 llm_kwargs={"local_files_only": True})


def test_a_reply_with_no_ranking_counts_as_not_ranked_and_shows_in_info(shared_cache, session_folder):
    class GarbledForHints(SimulatedLLM):
        def rank(self, requests):
            return [None if r.hint else ranking for r, ranking in zip(requests, super().rank(requests))]

    env = Re2LLMEnv(dataset=str(session_folder), llm=GarbledForHints(), encoder="hashing", reward="ndcg")
    env.reset(options={"session_index": 0})
    _, reward, _, _, info = env.step(2)
    assert info["no_ranking"] is True and info["rank"] == 0 and reward == 0.0
    env.reset(options={"session_index": 0})
    _, _, _, _, info = env.step(0)
    assert info["no_ranking"] is False


def test_a_step_reports_the_rank_it_filled_when_the_fill_took_in_columns_another_process_added(shared_cache, tmp_path):
    from rec_gym.envs.vector import Re2LLMVectorEnv

    path = tmp_path / "table.npz"
    kwargs = {"encoder": "hashing", "observation": "profile", "n_train": 40, "feedback_table": path}
    env, venv = Re2LLMEnv(**kwargs), Re2LLMVectorEnv(num_envs=1, **kwargs)
    # Another process (a composition run) adds a hint-set column to the same file, so that the fill
    # below, which takes that file in first, replaces the table's rank array by a wider one.
    other = env.task.table.opened_at(path)
    other.add_columns([[env.task.kb[0], env.task.kb[1]]])
    other.save()
    env.reset(options={"session_index": 2})
    _, _, _, _, info = env.step(4)
    assert info["rank"] == env.task.rank(2, 4) and info["rank"] != -1
    assert env.task.table.ranks.shape[1] == env.task.n_actions + 1
    venv.reset(options={"session_index": 3})
    _, _, _, _, infos = venv.step(np.array([4]))
    assert infos["rank"][0] == venv.task.rank(3, 4) and infos["rank"][0] != -1
