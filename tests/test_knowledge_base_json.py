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


def test_a_stale_hash_field_is_refused_with_the_file_and_the_fix(tmp_path):
    kb = built_kb()
    kb.save(tmp_path / "kb.json")
    raw = json.loads((tmp_path / "kb.json").read_text())
    raw["hints"][1]["hint"] = "Continue any series the user has started, even a long one."
    (tmp_path / "kb.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError) as info:
        load_knowledge_base(tmp_path / "kb.json")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'kb.json'}: field \"hash\" is {kb.hash!r}") and "\n" not in message
    assert "rec-gym build-kb" in message and 'delete the "hash" field' in message
    del raw["hash"]  # the documented way to accept edited hints: they get their own hash
    (tmp_path / "kb.json").write_text(json.dumps(raw))
    assert load_knowledge_base(tmp_path / "kb.json").hash == stable_hash([h["hint"] for h in raw["hints"]])


def test_hint_counts_file_sizes_and_field_types_have_documented_limits(tmp_path, monkeypatch):
    from rec_gym.knowledge import base

    too_many = [f"Hint number {k}." for k in range(base.MAX_HINTS + 1)]
    (tmp_path / "many.json").write_text(json.dumps({"hints": too_many}))
    with pytest.raises(ValueError, match=r'many.json: field "hints" holds 1,001 hints, more than .*MAX_HINTS = 1,000'):
        load_knowledge_base(tmp_path / "many.json")
    (tmp_path / "many.txt").write_text("\n".join(too_many))
    with pytest.raises(ValueError, match=r"many.txt: 1,001 hints, more than"):
        load_knowledge_base(tmp_path / "many.txt")
    with pytest.raises(ValueError, match=r"the kb= list: 1,001 hints, more than"):
        load_knowledge_base(too_many)
    with pytest.raises(ValueError, match=r"<list>: more than .*MAX_HINTS = 1,000 hints"):
        KnowledgeBase(iter(too_many))  # counted while reading, before a 1,001st hint is kept
    monkeypatch.setattr(base, "MAX_KB_FILE_BYTES", 100)
    (tmp_path / "big.txt").write_text("A hint that is long enough to pass the byte limit of this test's KB.\n" * 2)
    with pytest.raises(ValueError, match=r"big.txt is 138 bytes, more than its limit of 100"):
        load_knowledge_base(tmp_path / "big.txt")
    monkeypatch.undo()
    for field, value in (("provenance", [1]), ("name", 5), ("hash", 7)):
        (tmp_path / "typed.json").write_text(json.dumps({"hints": HINTS, field: value}))
        with pytest.raises(ValueError, match=f'typed.json: field "{field}" must be a JSON'):
            load_knowledge_base(tmp_path / "typed.json")
    (tmp_path / "hintprov.json").write_text(json.dumps({"hints": [{"hint": "x", "provenance": "y"}]}))
    with pytest.raises(ValueError, match=r'hintprov.json hints\[0\]: field "provenance" must be a JSON object'):
        load_knowledge_base(tmp_path / "hintprov.json")
    (tmp_path / "latin1.txt").write_bytes("Préférer les classiques.".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8 text"):
        load_knowledge_base(tmp_path / "latin1.txt")
    (tmp_path / "list.jsonl").write_text('["a hint"]\n')
    with pytest.raises(ValueError, match=r"list.jsonl line 1: expected a JSON object"):
        load_knowledge_base(tmp_path / "list.jsonl")
