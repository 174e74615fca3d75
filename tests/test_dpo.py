"""DPO pairs from recommender feedback (`rec-gym dpo-data`) and DPO training (`rec-gym dpo-train`)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.cli import main
from rec_gym.recsys.dpo import preference_pairs, read_pairs
from rec_gym.recsys.preferences import parse_preference

from conftest import write_session_folder
from llm_fixtures import build_tiny_llama, build_tokenizer, make_requests

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi"]
ENV_KWARGS = {"n_texts": 6, "recsys_training": {"epochs": 2}}


@pytest.fixture
def folder(tmp_path):
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": [GENRES[i % 4]],
              "creator": f"Director {i % 3}"} for i in range(60)]
    return str(write_session_folder(tmp_path / "tiny", items))


@pytest.fixture
def task(folder):
    return gym.make("RLRF4Rec-Synthetic-v0", dataset=folder, **ENV_KWARGS).unwrapped.task


def test_pairs_are_best_against_worst_and_a_malformed_reply_is_always_rejected(task):
    pairs, counts = preference_pairs(task)
    assert counts.sessions == 30 and counts.pairs == len(pairs) > 0
    assert counts.pairs + counts.dropped_margin + counts.dropped_malformed == counts.sessions
    by_id = {str(task.dataset.session_ids[r]): i for i, r in enumerate(task.rows)}
    for pair in pairs:
        i = by_id[pair["session_id"]]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert parse_preference(chosen) is not None
        good = task.well_formed[i]
        assert pair["chosen_score"] == pytest.approx(task.ndcg[i, 1:][good].max())
        if not good.all():
            assert pair["kind"] == "structure" and parse_preference(rejected) is None
        else:
            assert pair["kind"] == "score" and pair["rejected_score"] == pytest.approx(task.ndcg[i, 1:].min())
            assert pair["chosen_score"] > pair["rejected_score"]
        assert pair["prompt"][-1]["role"] == "user" and "Factors:" in pair["prompt"][-1]["content"]
        assert pair["provenance"]["writer"] == task.writer.name
    assert counts.structure == sum(p["kind"] == "structure" for p in pairs) > 0


def test_a_margin_drops_score_pairs_but_keeps_structure_pairs(task):
    _, loose = preference_pairs(task, margin=0.0)
    pairs, strict = preference_pairs(task, margin=1.0)
    assert all(p["kind"] == "structure" for p in pairs)
    assert strict.pairs == loose.structure
    assert strict.dropped_margin == loose.dropped_margin + (loose.pairs - loose.structure)


def test_dpo_data_command_writes_the_pairs_trl_reads(folder, tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    assert main(["dpo-data", "--env", "RLRF4Rec-Synthetic-v0", "--out", str(out), "--env-kwargs", f"dataset={folder}",
                 "n_texts=6", "recsys_training={epochs: 2}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    pairs = read_pairs(out)
    assert summary["pairs"] == len(pairs) and summary["sessions"] == 30
    assert {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "provenance"} <= set(pairs[0])
    assert main(["dpo-data", "--env", "Re2LLM-Synthetic-v0", "--out", str(out)]) == 2
    assert "not an RLRF4Rec id" in capsys.readouterr().err


def test_dpo_train_tunes_a_tiny_model_that_hf_then_loads(folder, tmp_path, capsys):
    pytest.importorskip("trl")
    import torch
    from safetensors.torch import load_file

    from rec_gym.llm import make_llm

    pairs_path = tmp_path / "pairs.jsonl"
    assert main(["dpo-data", "--env", "RLRF4Rec-Synthetic-v0", "--out", str(pairs_path), "--env-kwargs",
                 f"dataset={folder}", "n_texts=6", "recsys_training={epochs: 2}"]) == 0
    base = tmp_path / "base"
    tokenizer = build_tokenizer(base, make_requests(n_sessions=1), extra_tokens=["Factors:", "Preference:"])
    build_tiny_llama(base, tokenizer, seed=0)
    tuned = tmp_path / "tuned"
    assert main(["dpo-train", "--model", f"hf:{base}", "--pairs", str(pairs_path), "--out", str(tuned),
                 "--steps", "2", "--lr", "1e-3"]) == 0
    assert "llm='hf:" in capsys.readouterr().out
    before, after = load_file(str(base / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(json.loads((tuned / "dpo.json").read_text())["train_loss"])
    writer = make_llm(f"hf:{tuned}", local_files_only=True, mode="generate")
    reply = writer.generate([{"role": "user", "content": "Factors:"}], max_new_tokens=4)
    assert isinstance(reply, str)
    assert main(["dpo-train", "--model", "hf:org/not-here", "--pairs", str(pairs_path), "--out", str(tuned)]) == 2

    # RPO: the chosen replies' negative log-likelihood (several nats per token for a random model) joins the loss.
    rpo = tmp_path / "rpo"
    assert main(["dpo-train", "--model", f"hf:{base}", "--pairs", str(pairs_path), "--out", str(rpo),
                 "--steps", "2", "--lr", "1e-3", "--sft-weight", "1"]) == 0
    dpo_only, with_sft = (json.loads((f / "dpo.json").read_text()) for f in (tuned, rpo))
    assert with_sft["sft_weight"] == 1.0 and with_sft["train_loss"] > dpo_only["train_loss"] + 1.0
    assert main(["dpo-train", "--model", f"hf:{base}", "--pairs", str(pairs_path), "--out", str(rpo),
                 "--sft-weight", "-1"]) == 2


def test_read_pairs_refuses_a_line_that_is_not_a_pair_with_the_file_and_line(tmp_path):
    good = {"prompt": [{"role": "user", "content": "Factors:"}], "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}], "chosen_score": 0.5, "rejected_score": 0.25}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n\n")
    assert read_pairs(path) == [good]
    bad_lines = [
        ("[1, 2, 3]", "expected a JSON object with prompt, chosen and rejected, got a list"),
        (json.dumps({**good, "chosen": 5}), "field 'chosen' must be a string or a list of messages"),
        (json.dumps({**good, "prompt": [{"role": "user", "content": None}]}), "field 'prompt' must be"),
        (json.dumps({**good, "rejected": []}), "field 'rejected' must be"),
        (json.dumps(good).replace("0.5", "NaN"), "NaN is not a number JSON allows"),
        (json.dumps({**good, "rejected_score": "high"}), "field 'rejected_score' must be a finite number"),
        (json.dumps({**good, "chosen_score": True}), "field 'chosen_score' must be a finite number"),
    ]
    for line, expected in bad_lines:
        path.write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(ValueError) as info:
            read_pairs(path)
        assert str(info.value).startswith(f"{path} line 2: ") and expected in str(info.value), str(info.value)
        assert "\n" not in str(info.value)
