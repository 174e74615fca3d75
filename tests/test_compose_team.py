"""The composition env (several hints per prompt) and the PettingZoo team of retrievers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.envs import hint_team_v0
from rec_gym.feedback.table import UNKNOWN
from rec_gym.llm.prompts import combine_hints, render_prompt

KW = {"n_train": 12}


def ndcg(rank: int) -> float:
    return 1.0 / np.log2(rank + 1) if 1 <= rank <= 10 else 0.0


def test_compose_env_passes_gymnasium_and_sb3_checks():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("Re2LLMCompose-Synthetic-v0", **KW)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)
    env.close()


def test_the_final_reward_is_the_gain_of_the_whole_set_and_masks_follow_the_choices():
    env = gym.make("Re2LLMCompose-Synthetic-v0", max_hints=3, **KW)
    obs, info = env.reset(options={"session_index": 4})
    assert info["action_mask"].all() and obs[-20:].sum() == 0
    obs, reward, terminated, _, info = env.step(7)
    assert (reward, terminated, info["rank"]) == (0.0, False, -1)
    assert not info["action_mask"][7] and info["action_mask"][0] and obs[-20:][6] == 1.0
    assert not env.unwrapped.action_masks()[7] and not env.get_wrapper_attr("action_masks")()[7]
    obs, reward, terminated, _, info = env.step(7)  # masked: changes nothing, uses the step
    assert info["hints"].tolist() == [7, -1, -1] and not terminated
    obs, reward, terminated, _, info = env.step(2)
    assert terminated and info["hints"].tolist() == [7, 2, -1] and info["n_hints"] == 2
    task = env.unwrapped.task
    col = task.table.column([task.kb[1], task.kb[6]])
    assert info["rank"] == task.table.ranks[4, col] and info["baseline_rank"] == task.table.ranks[4, 0]
    assert reward == pytest.approx(ndcg(info["rank"]) - ndcg(info["baseline_rank"]))
    env.close()


def test_stop_ends_the_episode_and_an_empty_set_earns_nothing():
    env = gym.make("Re2LLMCompose-Synthetic-v0", **KW)
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(0)
    assert terminated and reward == 0.0 and info["rank"] == info["baseline_rank"] >= 0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)


def test_per_step_shaping_returns_the_final_reward_in_total():
    final = gym.make("Re2LLMCompose-Synthetic-v0", **KW)
    shaped = gym.make("Re2LLMCompose-Synthetic-v0", reward_shaping="per_step", **KW)
    rng = np.random.default_rng(0)
    for session in range(12):
        actions = list(rng.choice(np.arange(1, 21), size=3, replace=False))
        returns = []
        for env in (final, shaped):
            env.reset(options={"session_index": session})
            total, done = 0.0, False
            for a in actions:
                _, r, done, _, _ = env.step(a)
                total += r
            returns.append(total)
        assert returns[0] == pytest.approx(returns[1])


def test_a_one_hint_set_is_the_one_hint_env_entry_and_sets_are_order_free():
    single = gym.make("Re2LLM-Synthetic-v0", **KW)
    single.reset(options={"session_index": 3})
    _, _, _, _, info = single.step(5)
    single.close()  # saves the table
    compose = gym.make("Re2LLMCompose-Synthetic-v0", **KW).unwrapped
    table = compose.task.table
    assert compose.column([5]) == 5 and table.ranks[3, 5] == info["rank"] and table.ranks[3, 0] == info["baseline_rank"]
    assert compose.column([2, 9]) == compose.column([9, 2]) >= 21
    request = table.request(compose.task.dataset, 3)
    a, b = compose.task.kb[1], compose.task.kb[8]
    assert render_prompt(request.with_hint(combine_hints([b, a]))).endswith(f" Hint: {min(a, b)} Hint: {max(a, b)}")


def test_sets_are_saved_in_the_shared_table_file_and_read_back_by_every_env():
    env = gym.make("Re2LLMCompose-Synthetic-v0", max_hints=2, **KW)
    env.reset(options={"session_index": 0})
    env.step(4)
    _, _, _, _, info = env.step(11)
    env.close()
    other = gym.make("Re2LLM-Synthetic-v0", **KW).unwrapped.task.table
    col = other.column([other.columns[4][0], other.columns[11][0]])
    assert col is not None and other.ranks[0, col] == info["rank"]
    assert other.ranks.shape[1] > 21 and (other.ranks[1:, col] == UNKNOWN).all()


def test_same_seed_same_episode():
    runs = []
    for _ in range(2):
        env = gym.make("Re2LLMCompose-Synthetic-v0", **KW)
        obs, info = env.reset(seed=7)
        trace = [info["session_index"]]
        for a in (3, 8, 12):
            obs, r, done, _, _ = env.step(a)
            trace.append((obs.tolist(), r))
        runs.append(trace)
    assert runs[0] == runs[1]


def test_maskable_ppo_reads_the_masks():
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks

    env = gym.make("Re2LLMCompose-Synthetic-v0", **KW)
    model = sb3_contrib.MaskablePPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, verbose=0)
    model.learn(16)
    venv = model.get_env()
    venv.reset()
    for _ in range(6):
        masks = get_action_masks(venv)
        action, _ = model.predict(venv.get_attr("unwrapped")[0]._observation()[None], action_masks=masks)
        assert masks[0, int(action[0])]
        _, _, dones, _ = venv.step(action)


# ------------------------------------------------------------------------------------------- team

def test_team_env_passes_pettingzoo_api_and_seed_tests():
    from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

    api_test(hint_team_v0.env(**KW), num_cycles=20)
    parallel_api_test(hint_team_v0.parallel_env(**KW), num_cycles=20)
    seed_test(lambda: hint_team_v0.env(**KW), num_cycles=20)
    parallel_seed_test(lambda: hint_team_v0.parallel_env(**KW), num_cycles=20)


def test_team_reward_is_the_gain_of_the_distinct_hints():
    env = hint_team_v0.parallel_env(n_agents=3, **KW)
    env.reset(options={"session_index": 5})
    _, rewards, terms, truncs, infos = env.step({"retriever_0": 4, "retriever_1": 9, "retriever_2": 4})
    table, kb = env.task.table, env.task.kb
    rank = table.ranks[5, table.column([kb[3], kb[8]])]
    expected = ndcg(rank) - ndcg(table.ranks[5, 0])
    assert list(rewards.values()) == pytest.approx([expected] * 3) and infos["retriever_1"]["hints"].tolist() == [4, 9, -1]
    assert infos["retriever_1"]["n_hints"] == 2 and infos["retriever_1"]["rank"] == rank
    assert all(terms.values()) and not any(truncs.values()) and env.agents == []


def test_difference_rewards_credit_each_agent_with_what_the_team_would_lose_without_it():
    env = hint_team_v0.parallel_env(n_agents=3, reward_mode="difference", **KW)
    table, kb = env.task.table, env.task.kb
    for session in range(6):
        env.reset(options={"session_index": session})
        _, rewards, _, _, infos = env.step({"retriever_0": 2, "retriever_1": 15, "retriever_2": 0})
        t = lambda *hints: ndcg(table.ranks[session, table.column(hints)]) - ndcg(table.ranks[session, 0])  # noqa: E731
        team = t(kb[1], kb[14])
        assert infos["retriever_0"]["team_reward"] == pytest.approx(team)
        assert rewards["retriever_0"] == pytest.approx(team - t(kb[14]))
        assert rewards["retriever_1"] == pytest.approx(team - t(kb[1]))
        assert rewards["retriever_2"] == 0.0


def test_team_env_rejects_a_missing_action_and_a_bad_reward_mode():
    with pytest.raises(ValueError, match="reward_mode"):
        hint_team_v0.parallel_env(reward_mode="selfish", **KW)
    env = hint_team_v0.parallel_env(**KW)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="retriever_2"):
        env.step({"retriever_0": 1, "retriever_1": 1})


@pytest.mark.parametrize("module_name", ["rec_gym.envs.compose", "rec_gym.envs.hint_team_v0"])
def test_the_manual_examples_run(module_name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_precompute_fills_every_hint_set_or_a_sampled_budget_and_says_how_many_prompts(capsys):
    from rec_gym.cli import main

    args = ["precompute", "--env", "Re2LLMCompose-Synthetic-v0", "--no-progress", "--env-kwargs", "n_train=4"]
    assert main(args + ["--max-hints", "2", "--sets-per-session", "5"]) == 0
    assert "4 sessions x 26 prompt variants" in capsys.readouterr().out  # 1 + 20 single hints + 5 sampled pairs
    assert main(args + ["--max-hints", "2"]) == 0
    out = capsys.readouterr().out
    assert "= 844 prompts" in out and "740 filled by this run" in out  # 4 x (21 + 190), less the 4 x 26 known
    env = gym.make("Re2LLMCompose-Synthetic-v0", n_train=4).unwrapped
    table = env.task.table
    assert table.ranks.shape[1] == 211 and not (table.ranks == UNKNOWN).any()


def test_filling_the_one_hint_table_leaves_the_hint_set_columns_to_their_envs(tmp_path):
    env = gym.make("Re2LLM-Synthetic-v0", feedback_table=str(tmp_path / "t.npz"), **KW)
    task = env.unwrapped.task
    (pair,) = task.table.add_columns([[task.kb[0], task.kb[1]]])
    task.fill_all(progress=False)
    assert not (task.table.ranks[:, :task.n_actions] == UNKNOWN).any()
    assert (task.table.ranks[:, pair] == UNKNOWN).all()
    env.close()
