"""The knowledge base's JSON format: hints with provenance, the hint-text hash, and every kb= form the envs take."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import rec_gym  # noqa: F401
from rec_gym.knowledge.base import KB_FORMAT, KnowledgeBase, load_knowledge_base
from rec_gym.storage import stable_hash

HINTS = ["Prefer older, classic films.", "Continue any series the user has started.", "Favour underrated titles."]


def built_kb() -> KnowledgeBase:
    records = [{"session_id": f"s{k}", "rank_without": 0, "rank_with": k + 1, "validated": True, "order": 2 * k,
                "transcript_key": f"key{k}"} for k in range(len(HINTS))]
    return KnowledgeBase(HINTS, name="built", provenance={"dataset": "synthetic", "split": "train", "seed": 3,
                                                          "llm_calls": {"answer": 12}}, hint_provenance=records)


def test_json_round_trip_keeps_hints_in_order_with_their_provenance(tmp_path):
    kb = built_kb()
    kb.save(tmp_path / "kb.json")
    raw = json.loads((tmp_path / "kb.json").read_text())
    assert raw["format"] == KB_FORMAT and raw["hash"] == kb.hash
    assert [h["hint"] for h in raw["hints"]] == HINTS
    loaded = load_knowledge_base(tmp_path / "kb.json")
    assert loaded.hints == tuple(HINTS)
    assert loaded.hint_provenance[2]["rank_with"] == 3 and loaded.hint_provenance[1]["transcript_key"] == "key1"
    assert loaded.provenance["seed"] == 3 and loaded.provenance["llm_calls"] == {"answer": 12}
    assert loaded.name == "built"


def test_the_hash_is_of_the_hint_texts_only_so_existing_tables_stay_valid(tmp_path):
    kb = built_kb()
    assert kb.hash == stable_hash(HINTS) == KnowledgeBase(HINTS).hash
    (tmp_path / "kb.txt").write_text("\n".join(HINTS) + "\n")
    assert load_knowledge_base(str(tmp_path / "kb.txt")).hash == kb.hash
    assert load_knowledge_base(kb) is kb and load_knowledge_base(list(HINTS)).hash == kb.hash
    assert len(load_knowledge_base("default", "movie")) == 20


def test_a_json_file_may_list_plain_strings_and_names_its_errors(tmp_path):
    (tmp_path / "plain.json").write_text(json.dumps({"hints": HINTS}))
    assert load_knowledge_base(tmp_path / "plain.json").hints == tuple(HINTS)
    (tmp_path / "bad.json").write_text('{"hints": [1, 2')
    with pytest.raises(ValueError, match=r"bad.json line 1: not valid JSON"):
        load_knowledge_base(tmp_path / "bad.json")
    (tmp_path / "nohint.json").write_text(json.dumps({"hints": [{"text": "x"}]}))
    with pytest.raises(ValueError, match=r"nohint.json hints\[0\]"):
        load_knowledge_base(tmp_path / "nohint.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "other-v9", "hints": HINTS}))
    with pytest.raises(ValueError, match="other-v9"):
        load_knowledge_base(tmp_path / "other.json")


def test_the_env_action_space_follows_a_json_kb(tmp_path):
    built_kb().save(tmp_path / "kb.json")
    env = gym.make("Re2LLM-Synthetic-v0", kb=str(tmp_path / "kb.json"), n_train=20, encoder="hashing")
    try:
        assert env.action_space.n == len(HINTS) + 1
        task = env.unwrapped.task
        assert task.kb.hint_for_action(2) == HINTS[1] and task.table.provenance["kb_hash"] == stable_hash(HINTS)
    finally:
        env.close()
