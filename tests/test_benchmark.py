"""Benchmark statistics (IQM, stratified bootstrap) and a tiny end-to-end benchmark run."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import yaml

from rec_gym.cli import agents as cli
from rec_gym.agents.benchmark import BenchmarkConfig
from rec_gym.agents.benchmark import run as run_benchmark
from rec_gym.agents.statistics import iqm, mean, paired_difference_ci, stratified_bootstrap_ci, summarize
from rec_gym.metrics import ndcg_at_k


@pytest.fixture(autouse=True)
def _use_agents_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path_factory.getbasetemp() / "agents-cache"))


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # drops 1, 2 and 7, 8
    assert iqm(np.array([0.0, 0.0, 1.0, 1.0, 100.0])) == pytest.approx(2.0 / 3.0)  # drops one from each end
    scores = np.random.default_rng(0).normal(size=(10, 3))
    from scipy.stats import trim_mean

    assert iqm(scores) == pytest.approx(trim_mean(scores, 0.25, axis=None))


def test_confidence_interval_of_a_constant_is_degenerate():
    assert stratified_bootstrap_ci(np.full(5, 0.42), reps=2000) == pytest.approx((0.42, 0.42))
    assert stratified_bootstrap_ci(np.full(5, 0.42), aggregate=mean, reps=2000) == pytest.approx((0.42, 0.42))
    assert stratified_bootstrap_ci(np.array([[0.3, 0.9]]), aggregate=mean) == (0.6, 0.6)  # one run: no resampling


def test_rliable_intervals_match_the_hand_computed_ones():
    # Four runs 0, 1, 2, 10: IQM = mean(1, 2) = 1.5. A replicate's IQM is 0 when at least three of
    # its four draws are the 0 (probability 13/256 = 5.1%), and 10 likewise: both beyond 2.5%, so the
    # 95% percentile interval is exactly (0, 10).
    scores = np.array([0.0, 1.0, 2.0, 10.0])
    assert iqm(scores) == 1.5 and stratified_bootstrap_ci(scores, reps=20_000) == (0.0, 10.0)
    # Two runs 0 and 1: replicate means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so (0, 1).
    assert stratified_bootstrap_ci(np.array([0.0, 1.0]), aggregate=mean, reps=20_000) == (0.0, 1.0)
    # The same seed gives the same interval, and NumPy's global generator is left as it was.
    np.random.seed(3)
    before = np.random.get_state()[1].copy()
    rng = np.random.default_rng(4).normal(size=8)
    assert stratified_bootstrap_ci(rng, reps=500, seed=1) == stratified_bootstrap_ci(rng, reps=500, seed=1)
    assert np.array_equal(np.random.get_state()[1], before)


def test_bootstrap_is_stratified_by_task():
    # Every run scores 0 on task A and 1 on task B: resampling runs within each task always keeps
    # half zeros and half ones, so the mean is exactly 0.5 in every replicate.
    scores = np.column_stack([np.zeros(6), np.ones(6)])
    assert stratified_bootstrap_ci(scores, aggregate=mean, reps=2000) == pytest.approx((0.5, 0.5))


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_more_runs():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.5, 0.1, size=5), rng.normal(0.5, 0.1, size=200)
    lo, hi = stratified_bootstrap_ci(few, aggregate=mean, reps=2000)
    assert lo < few.mean() < hi
    lo2, hi2 = stratified_bootstrap_ci(many, aggregate=mean, reps=2000)
    assert hi2 - lo2 < hi - lo
    stats = summarize(few, reps=2000)
    assert stats["iqm_lo"] <= stats["iqm"] <= stats["iqm_hi"] and stats["n_runs"] == 5


def test_paired_difference_of_a_constant_shift_is_exact():
    x = np.random.default_rng(2).normal(size=(1, 50))
    assert paired_difference_ci(x + 0.25, x) == pytest.approx((0.25, 0.25, 0.25))
    assert paired_difference_ci(x, x) == pytest.approx((0.0, 0.0, 0.0))


def test_paired_difference_keeps_sessions_paired():
    # Sessions differ a lot (sd 1) but A beats B by 0.05 on every one, up to small noise: pairing
    # cancels the session spread, which an unpaired comparison (interval ~0.28 wide) could not.
    rng = np.random.default_rng(3)
    sessions = rng.normal(size=400)
    a = (sessions + 0.05 + rng.normal(0, 0.01, size=400))[None]
    diff, lo, hi = paired_difference_ci(a, sessions[None])
    assert lo < diff < hi and 0.04 < lo and hi < 0.06 and hi - lo < 0.01


def test_paired_difference_resamples_seeds():
    # Five seeds of A sit 0.0 .. 0.2 above B on every session: the interval spans the seed spread.
    sessions = np.random.default_rng(4).normal(size=300)
    a = sessions[None] + np.linspace(0.0, 0.2, 5)[:, None]
    diff, lo, hi = paired_difference_ci(a, sessions[None])
    assert diff == pytest.approx(0.1) and 0.0 <= lo < 0.07 and 0.13 < hi <= 0.2
    with pytest.raises(ValueError, match="same sessions"):
        paired_difference_ci(a, sessions[None, :200])


def test_config_refuses_a_split_in_env_kwargs(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"algos": ["ppo"], "envs": [{"id": "Re2LLM-Synthetic-v0", "kwargs": {"split": "test"}}]}))
    with pytest.raises(ValueError, match="split"):
        BenchmarkConfig.load(path)


def test_shipped_configs_load_with_at_least_five_seeds():
    for name in ("quick", "full"):
        config = BenchmarkConfig.load(name)
        assert len(config.seeds) >= 5 and set(config.algos) == {"ppo", "a2c", "dqn"}


def test_tiny_benchmark_writes_tables_and_plots_with_baselines(tmp_path):
    config = {
        "name": "tiny", "algos": ["a2c"], "seeds": [0, 1], "timesteps": 256, "val_every": 128, "workers": 2,
        "linucb": {"steps": 300}, "bootstrap_reps": 200,
        "envs": [{"id": "Re2LLM-Synthetic-v0", "label": "Synthetic", "kwargs": {"n_train": 300}}],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    cli.configure_benchmark(parser)
    assert cli.run_benchmark(parser.parse_args(["--config", str(path), "--out", str(tmp_path / "out")])) == 0
    out = tmp_path / "out"
    for name in ("results.csv", "results.md", "curves.csv", "learning_curves.png", "comparison.png", "command.txt"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "results.csv")))
    runs = {(r["method"], r["seed"]) for r in rows}
    assert {("A2C", "0"), ("A2C", "1"), ("random hint", "1"), ("LinUCB", "0"), ("oracle (upper bound)", "0"),
            ("no hint", "0"), ("best fixed hint", "0")} <= runs
    ndcg = {(r["method"], r["seed"]): float(r["NDCG@10"]) for r in rows}
    assert all(ndcg[("oracle (upper bound)", "0")] >= v for v in ndcg.values())
    curves = list(csv.DictReader(open(out / "curves.csv")))
    a2c_steps = [int(c["timesteps"]) for c in curves if c["method"] == "A2C" and c["seed"] == "0"]
    assert a2c_steps[0] == 0 and a2c_steps[-1] >= 256 and len(a2c_steps) >= 3
    md = (out / "results.md").read_text()
    assert "| oracle (upper bound) |" in md and "| A2C | 2 |" in md and "95%" in md
    assert "| best fixed hint | 1 | " in md and "| +0.000 [+0.000, +0.000] |" in md  # best fixed vs itself
    assert f"numpy {np.__version__}" in (out / "command.txt").read_text()  # what a rerun must match
    runs = [json.loads(line) for line in open(out / "runs.jsonl")]
    assert all(len(r["test_ranks"]) == r["row"]["n_test_sessions"] for r in runs)
    oracle = next(r for r in runs if r["row"]["method"] == "oracle (upper bound)")
    assert np.mean(ndcg_at_k(np.array(oracle["test_ranks"]), 10)) == pytest.approx(oracle["row"]["NDCG@10"])


def test_default_bootstrap_uses_fifty_thousand_resamples_in_chunks(monkeypatch):
    import rec_gym.agents.statistics as statistics

    assert statistics.BOOTSTRAP_REPS == 50_000
    sessions = np.random.default_rng(5).normal(size=(1, 300))
    whole = paired_difference_ci(sessions + 0.1, sessions[:, ::-1], reps=3000)
    monkeypatch.setattr(statistics, "CHUNK_VALUES", 300 * 7)  # 7 replicates per chunk, 429 chunks
    chunked = paired_difference_ci(sessions + 0.1, sessions[:, ::-1], reps=3000)
    assert chunked[0] == whole[0] and chunked[1] < chunked[0] < chunked[2]
    assert abs(chunked[1] - whole[1]) < 0.02 and abs(chunked[2] - whole[2]) < 0.02
    assert statistics._chunks(3000, 300) == [7] * 428 + [4]


def _ranked_runs(method: str, kind: str, ranks: np.ndarray) -> list[dict]:
    """Benchmark results of ``method`` on env "E": one per row of ``ranks`` (seeds x test sessions)."""
    out = []
    for seed, row in enumerate(ranks):
        score = float(np.mean(ndcg_at_k(row, 10)))
        metrics = {m: score for m in ("HR@1", "HR@5", "HR@10", "NDCG@1", "NDCG@5", "mean_reward", "beats_no_hint",
                                      "hurts_no_hint")}
        out.append({"row": {"env": "E", "env_id": "Re2LLM-Synthetic-v0", "method": method, "kind": kind, "seed": seed,
                            **metrics, "NDCG@10": score, "n_test_sessions": len(row), "seconds": 0.0},
                    "curve": [[0, score]], "test_ranks": row.tolist()})
    return out


def _constructed_benchmark():
    """PPO's five seeds agree (tight interval over seeds, above the best fixed hint's single run), but
    PPO wins big on a few sessions and loses on many: over sessions the difference is noise."""
    from rec_gym.agents.benchmark import EnvConfig

    rng = np.random.default_rng(7)
    fixed = rng.choice([1, 2, 11], size=(1, 60))
    ppo_row = np.where(rng.random(60) < 0.5, 1, 11)
    ppo = np.repeat(ppo_row[None], 5, axis=0)
    ppo[:, 0] = [1, 1, 1, 2, 2]  # a little seed spread
    results = (_ranked_runs("PPO", "rl", ppo) + _ranked_runs("best fixed hint", "baseline", fixed)
               + _ranked_runs("oracle (upper bound)", "baseline", np.ones((1, 60), dtype=int))
               + _ranked_runs("no hint", "baseline", np.full((1, 60), 11)))
    config = BenchmarkConfig(name="constructed", algos=["ppo"], seeds=[0, 1, 2, 3, 4],
                             envs=[EnvConfig("Re2LLM-Synthetic-v0", "E")], bootstrap_reps=5000)
    return config, results


def test_verdict_follows_the_paired_interval_not_the_intervals_over_seeds():
    from rec_gym.agents.benchmark import paired_gains, results_markdown, summarize_rows

    config, results = _constructed_benchmark()
    rows = [r["row"] for r in results]
    summary = summarize_rows(rows, config.bootstrap_reps)
    ppo, fixed = summary[("E", "PPO")], summary[("E", "best fixed hint")]
    assert ppo["mean_lo"] > fixed["mean_hi"]  # the intervals over seeds do not overlap
    gains = paired_gains(results, config.bootstrap_reps)
    difference, low, high = gains[("E", "PPO")]
    assert difference > 0 and low < 0 < high  # the paired interval includes 0
    md = results_markdown(config, rows, summary, gains)
    assert "it does not beat the best fixed hint (the interval includes 0)" in md
    assert "do not overlap" not in md and "it beats" not in md


def test_tables_drop_hr_at_1_and_the_plot_shows_the_table_means_with_a_legend(tmp_path):
    from rec_gym.agents.benchmark import plot_comparison, results_markdown, summarize_rows

    config, results = _constructed_benchmark()
    rows = [r["row"] for r in results]
    summary = summarize_rows(rows, 2000)
    md = results_markdown(config, rows, summary)
    header = next(line for line in md.splitlines() if line.startswith("| method |"))
    assert "HR@1 " not in header and "| HR@5 |" in header and "| NDCG@1 |" in header
    table_means = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 3 and cells[2][:1].isdigit():
            table_means[cells[0]] = float(cells[2].split()[0])
    fig = plot_comparison(summary, tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 0
    ax = fig.axes[0]
    heights = {label.get_text(): bar.get_width() for label, bar in zip(ax.get_yticklabels(), ax.patches)}
    assert set(heights) == set(table_means) == {"PPO", "best fixed hint", "oracle (upper bound)", "no hint"}
    for method, value in table_means.items():
        assert heights[method] == pytest.approx(value, abs=5e-4)
    assert "mean" in ax.get_xlabel()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["RL algorithm", "baseline"]
    colors = {label.get_text(): bar.get_facecolor() for label, bar in zip(ax.get_yticklabels(), ax.patches)}
    assert colors["PPO"] != colors["no hint"] and colors["no hint"] == colors["best fixed hint"]


def test_composition_and_team_rows_share_the_test_sessions_and_the_paired_interval(tmp_path, monkeypatch):
    import rec_gym.agents.training as training

    config = {
        "name": "sets", "algos": [], "seeds": [0], "timesteps": 64, "val_every": 64, "workers": 1,
        "baselines": ["no_hint", "best_fixed"], "bootstrap_reps": 200, "out": str(tmp_path / "out"),
        "envs": [{"id": "Re2LLM-Synthetic-v0", "label": "Synthetic", "kwargs": {"n_train": 16},
                  "hint_sets": [{"env": "Re2LLMCompose-Synthetic-v0", "algo": "maskable_ppo", "kwargs": {"max_hints": 2}},
                                {"env": "hint_team_v0", "algo": "ppo", "kwargs": {"n_agents": 2}, "label": "team"}]}],
    }
    path = tmp_path / "sets.yaml"
    path.write_text(yaml.safe_dump(config))
    shipped = training.load_hyperparams
    tiny = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1, "policy_kwargs": "dict(net_arch=[16])"}
    monkeypatch.setattr(training, "load_hyperparams", lambda algo, env_id, path=None: {**shipped(algo, env_id, path), **tiny})
    out = run_benchmark(BenchmarkConfig.load(path), progress=False)
    runs = {r["row"]["method"]: r for r in (json.loads(line) for line in open(out / "runs.jsonl"))}
    assert set(runs) == {"MASKABLE_PPO (composition)", "team", "no hint", "best fixed hint"}
    assert {r["row"]["n_test_sessions"] for r in runs.values()} == {400}
    assert runs["team"]["row"]["env_id"] == "hint_team_v0" and runs["team"]["row"]["kind"] == "rl"
    md = (out / "results.md").read_text()
    for label in ("MASKABLE_PPO (composition)", "team"):
        gain = paired_difference_ci(ndcg_at_k(np.array([runs[label]["test_ranks"]]), 10),
                                    ndcg_at_k(np.array([runs["best fixed hint"]["test_ranks"]]), 10), reps=200)
        assert f"| {label} | 1 | " in md and f"{gain[0]:+.3f} [{gain[1]:+.3f}, {gain[2]:+.3f}]" in md


def test_a_hint_set_row_on_other_sessions_is_refused_before_training(tmp_path):
    config = {"name": "bad", "algos": [], "seeds": [0], "baselines": ["no_hint"], "out": str(tmp_path / "out"),
              "envs": [{"id": "Re2LLM-Synthetic-v0", "kwargs": {"n_train": 16},
                        "hint_sets": [{"env": "hint_team_v0", "algo": "ppo", "kwargs": {"seed": 7}}]}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"'PPO \(team\)' \(hint_team_v0\) of Re2LLM-Synthetic-v0 has 400 test sessions "
                                         r"that are not Re2LLM-Synthetic-v0's 400"):
        run_benchmark(BenchmarkConfig.load(path), progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"hint_sets\[0\]: algo='a2c' is not one of \('maskable_ppo', 'ppo'\)"):
        path.write_text(yaml.safe_dump({**config, "envs": [{"id": "Re2LLM-Synthetic-v0", "hint_sets": [
            {"env": "Re2LLMCompose-Synthetic-v0", "algo": "a2c"}]}]}))
        BenchmarkConfig.load(path)
