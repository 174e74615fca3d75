"""The pipeline as one command: a benchmark config with ``kb: {build: ...}`` builds the KB from train, then benchmarks it."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest
import yaml

from rec_gym.cli import agents as cli
from rec_gym.agents.benchmark import BenchmarkConfig
from rec_gym.knowledge.base import load_knowledge_base

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_re2llm_config_builds_a_kb_for_each_env():
    config = BenchmarkConfig.load(ROOT / "benchmarks" / "configs" / "re2llm.yaml")
    assert [env.label for env in config.envs] == ["Synthetic", "ml-latest-small"]
    assert all(env.kb_build["support"] is True and env.kb_build["max_hints"] == 20 for env in config.envs)


@pytest.mark.parametrize("kb, message", [
    ({"path": "kb.json"}, r"envs\[0\].kb must be \{build"),
    ({"build": {"max_hint": 3}}, r"unknown options \['max_hint'\]"),
])
def test_a_bad_kb_entry_names_the_fix(tmp_path, kb, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"algos": [], "envs": [{"id": "Re2LLM-Synthetic-v0", "kb": kb}]}))
    with pytest.raises(ValueError, match=message):
        BenchmarkConfig.load(path)


def test_benchmark_builds_the_kb_from_train_fills_tables_and_evaluates_with_it(tmp_path):
    config = {
        "name": "pipeline", "algos": [], "seeds": [0], "workers": 1, "bootstrap_reps": 100,
        "baselines": ["no_hint", "best_fixed", "oracle"],
        "envs": [{"id": "Re2LLM-Synthetic-v0", "label": "Synthetic", "kwargs": {"n_train": 60},
                  "kb": {"build": {"max_hints": 4, "dedup": "embedding", "encoder": "hashing", "similarity": 0.6,
                                   "support_sessions": 8, "response_cache": str(tmp_path / "r.sqlite")}}}],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    cli.configure_benchmark(parser)
    assert cli.run_benchmark(parser.parse_args(["--config", str(path), "--out", str(tmp_path / "out")])) == 0
    kb = load_knowledge_base(tmp_path / "out" / "kb-Synthetic.json")
    assert 1 <= len(kb) <= 4 and kb.provenance["split"] == "train" and kb.provenance["options"]["support"] is True
    assert all(record["support_gain"] >= 0 for record in kb.hint_provenance)
    md = (tmp_path / "out" / "results.md").read_text()
    assert f"kb={tmp_path / 'out' / 'kb-Synthetic.json'}" in md and "| Synthetic | kb-Synthetic.json |" in md
    rows = {r["method"]: float(r["NDCG@10"]) for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert rows["oracle (upper bound)"] == max(rows.values()) and set(rows) == {"no hint", "best fixed hint",
                                                                                "oracle (upper bound)"}
