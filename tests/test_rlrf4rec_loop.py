"""The tiny writer and RLRF4Rec's loop: the writer learns from a teacher, loads as hf:<folder> and writes the same
text there, and the loop runs rounds of sample, score, pair and DPO that resume without redoing a finished round."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rec_gym.data import load_dataset
from rec_gym.data.embeddings import item_embeddings
from rec_gym.llm import make_llm
from rec_gym.recsys import train_sasrec
from rec_gym.recsys.preferences import (embed_texts, generate_preferences, parse_preference, preference_prompt,
                                        preference_request)
from rec_gym.recsys.writer import (CHAT_TEMPLATE, load_writer, new_writer, parameter_count, prompt_text, sample_replies,
                                   save_writer, supervised_fine_tune, train_tokenizer)


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


def _teacher(dataset, rows, n=2):
    texts = generate_preferences(make_llm("simulated"), dataset, rows, n=n, temperature=1.0, cache=False, progress=False)
    messages = [list(preference_request(dataset.session_items(int(r))[0], dataset.domain).as_dicts()) for r in rows]
    return messages, texts


@pytest.fixture(scope="module")
def writer(synthetic, tmp_path_factory):
    """A writer fine-tuned on two teacher texts for each of 240 training sessions: ``(folder, prompts, losses)``."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    messages, texts = _teacher(synthetic, synthetic.indices("train")[:240])
    tokenizer = train_tokenizer([m[-1]["content"] for m in messages] + [t for ts in texts for t in ts])
    model = new_writer(tokenizer, seed=0)
    assert 300_000 < parameter_count(model) < 3_000_000
    prompts = [prompt_text(tokenizer, m) for m, ts in zip(messages, texts) for _ in ts]
    losses = supervised_fine_tune(model, tokenizer, prompts, [t for ts in texts for t in ts], epochs=4, lr=3e-3,
                                  progress=False)
    folder = save_writer(model, tokenizer, tmp_path_factory.mktemp("writer") / "round-0", {"round": 0})
    return folder, prompts, losses


def test_the_writer_learns_from_the_teacher_and_writes_the_same_text_as_hf_folder(synthetic, writer):
    folder, prompts, losses = writer
    # The template keeps the history's titles and drops the fixed instructions.
    assert prompts[0].startswith("<s>") and prompts[0].endswith("\nAnswer:\n") and "First name" not in prompts[0]
    assert synthetic.session_items(int(synthetic.indices("train")[0]))[0][0].title in prompts[0]
    assert losses[-1] < losses[0] - 1.5
    assert json.loads((folder / "writer.json").read_text()) == {"round": 0}
    reloaded, reloaded_tokenizer = load_writer(folder)
    assert reloaded_tokenizer.chat_template == CHAT_TEMPLATE
    greedy = sample_replies(reloaded, reloaded_tokenizer, prompts[:1], 1, 0.0, max_new_tokens=24)[0][0]
    assert greedy.startswith("Factors:")
    hf = make_llm(f"hf:{folder}", local_files_only=True, mode="generate")
    request = preference_request(synthetic.session_items(int(synthetic.indices("train")[0]))[0], synthetic.domain,
                                 temperature=0.0, max_new_tokens=24)
    assert hf.write([request]) == [greedy]
    # Sampling is seeded: the same seed gives the same texts, another seed other texts.
    a = sample_replies(reloaded, reloaded_tokenizer, prompts[:2], 3, 1.0, seed=5, max_new_tokens=16)
    assert a == sample_replies(reloaded, reloaded_tokenizer, prompts[:2], 3, 1.0, seed=5, max_new_tokens=16)
    assert a != sample_replies(reloaded, reloaded_tokenizer, prompts[:2], 3, 1.0, seed=6, max_new_tokens=16)
    assert [len(x) for x in a] == [3, 3]


def test_the_loop_runs_dpo_rounds_and_resumes_without_redoing_a_finished_round(synthetic, writer, tmp_path):
    pytest.importorskip("trl")
    import shutil

    from rec_gym.agents.rlrf4rec_loop import LoopConfig, run_loop

    rows = synthetic.indices("train")[:300]
    texts = generate_preferences(make_llm("simulated"), synthetic, rows, n=1, temperature=1.0, progress=False)
    vectors = embed_texts([t[0] for t in texts], "hashing")
    recommender = train_sasrec(synthetic, texts={int(r): vectors[k:k + 1] for k, r in enumerate(rows)},
                               encoder="hashing", item_texts=item_embeddings(synthetic.catalog, "hashing"), epochs=1,
                               progress=False)
    # The fixture's writer learned the titles prompt; the loop asks every writer with its configured prompt.
    config = LoopConfig(rounds=1, n=4, train_sessions=12, eval_sessions=6, dpo_epochs=1, dpo_batch_size=4,
                        prompt="titles", pair_margin=0.0)
    out = tmp_path / "loop"
    # A finished round 0 is resumed, not redone: the fine-tuned writer of the fixture stands in for it.
    shutil.copytree(writer[0], out / "round-0")
    summary = run_loop(out, config, progress=False, recommender=recommender)
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    pairs = [json.loads(line) for line in (out / "round-1" / "pairs.jsonl").read_text().splitlines()]
    # A score pair's chosen text scores higher; a structure pair rejects a malformed reply whatever its score.
    assert pairs and all(p["chosen_score"] > p["rejected_score"] + config.pair_margin if p["kind"] == "score" else
                         parse_preference(p["rejected"][0]["content"]) is None for p in pairs)
    assert summary["rounds"][1]["writer"]["pairs"]["pairs"] == len(pairs)
    # The writer is asked with the configured prompt, and DPO keeps the chosen texts likely (RPO).
    row = {str(synthetic.session_ids[r]): int(r) for r in synthetic.indices("train")}[pairs[0]["session_id"]]
    assert pairs[0]["prompt"][-1]["content"] == preference_prompt(synthetic.session_items(row)[0], synthetic.domain,
                                                                  "titles")
    assert summary["rounds"][1]["writer"]["pairs"]["margin"] == 0.0
    assert json.loads((out / "round-1" / "dpo.json").read_text())["sft_weight"] == config.dpo_sft_weight == 1.0
    diff = summary["rounds"][1]["sampled_reward minus round 0"]
    assert diff["low"] <= diff["mean"] <= diff["high"]
    shares = summary["rounds"][1]["kind_shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert (out / "rounds.png").stat().st_size > 0 and "| 1 |" in (out / "summary.md").read_text()

    weights = {r: (out / f"round-{r}" / "model.safetensors").read_bytes() for r in (0, 1)}
    evaluation = (out / "round-1" / "eval.json").read_text()
    (out / "round-1" / "eval.json").unlink()
    again = run_loop(out, config, progress=False, recommender=recommender)
    assert {r: (out / f"round-{r}" / "model.safetensors").read_bytes() for r in (0, 1)} == weights
    assert (out / "round-1" / "eval.json").read_text() == evaluation
    assert again["rounds"][1]["sampled_reward"] == summary["rounds"][1]["sampled_reward"]
    with pytest.raises(ValueError, match="other settings"):
        run_loop(out, LoopConfig(rounds=2, n=2), progress=False, recommender=recommender)
    with pytest.raises(ValueError, match="runs on 'synthetic' only"):
        LoopConfig(dataset="steam")
    with pytest.raises(ValueError, match="n must be >= 2"):
        LoopConfig(n=1)
    assert np.isfinite(summary["no_text"]["reward"])
