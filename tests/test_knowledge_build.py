"""Reflective exploration: the simulated writer, validation, both de-duplication modes, support, call counts, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rec_gym.data import load_dataset
from rec_gym.knowledge.build import STAGES, build_knowledge_base
from rec_gym.knowledge.extraction import extract_hints, leaks_title
from rec_gym.knowledge.reflection import dedup_request, next_turn, parse_yes_no, reflection_turns
from rec_gym.llm.protocol import RankRequest, target_rank
from rec_gym.llm.response_cache import ResponseCache
from rec_gym.llm.simulated import BASE_WEIGHTS, SimulatedLLM, hint_weights
from rec_gym.llm.simulated_reflection import EXPLANATIONS, GENERIC_HINTS, HINT_TEMPLATES, join_hints
from rec_gym.metrics import ndcg_at_k

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 60


@pytest.fixture
def dataset():
    return load_dataset("synthetic", n_train=N_TRAIN)


def build(dataset, tmp_path, **options):
    options = {"max_hints": 6, "dedup": "llm", "progress": False, "response_cache": tmp_path / "r.sqlite", **options}
    return build_knowledge_base(dataset, SimulatedLLM(), **options)


@pytest.mark.parametrize("key", sorted(HINT_TEMPLATES))
def test_every_simulated_hint_template_moves_exactly_its_aspect_its_way(key):
    aspect, direction = key
    for template in HINT_TEMPLATES[key]:
        for words in ({"noun": "movie", "plural": "films", "verb": "watched", "creator": "director", "creators": "directors"},
                      {"noun": "game", "plural": "games", "verb": "played", "creator": "developer", "creators": "developers"}):
            weights, _ = hint_weights(template.format(**words))
            moved = {a: np.sign(weights[a] - BASE_WEIGHTS[a]) for a in BASE_WEIGHTS if weights[a] != BASE_WEIGHTS[a]}
            assert moved == {aspect: direction}, template


def test_a_joined_hint_moves_both_of_its_aspects_their_ways():
    words = {"noun": "movie", "plural": "films", "verb": "watched", "creator": "director", "creators": "directors"}
    for first_key, firsts in HINT_TEMPLATES.items():
        for second_key, seconds in HINT_TEMPLATES.items():
            if first_key[0] == second_key[0]:
                continue
            for first in firsts:
                for second in seconds:
                    text = join_hints(first.format(**words), second.format(**words))
                    weights, _ = hint_weights(text)
                    moved = {a: np.sign(weights[a] - BASE_WEIGHTS[a]) for a in BASE_WEIGHTS if weights[a] != BASE_WEIGHTS[a]}
                    assert moved == dict([first_key, second_key]), text


def test_generic_hints_and_explanations_move_no_aspect():
    for text in (*GENERIC_HINTS, *EXPLANATIONS):
        assert hint_weights(text)[0] == BASE_WEIGHTS, text


def test_the_simulated_conversation_is_deterministic_and_its_hints_extract(dataset):
    llm = SimulatedLLM()
    rows = dataset.indices("train")[:12]
    replies = []
    for row in rows:
        history, candidates = dataset.session_items(int(row))
        request = RankRequest(tuple(history), tuple(candidates), None, dataset.domain)
        pos = int(dataset.target_pos[row])
        first = reflection_turns(request, llm.rank([request])[0], pos)
        second = next_turn(first, llm.write([first])[0], "analyse")
        third = next_turn(second, llm.write([second])[0], "hint")
        reply = llm.write([third])[0]
        assert reply == SimulatedLLM().write([third])[0]
        assert candidates[pos].title in second.messages[-1][1] and candidates[pos].title not in third.messages[-1][1]
        replies.append(reply)
    assert all(extract_hints(r) for r in replies)
    assert len({r.split("\n")[2][:2] for r in replies}) > 1  # more than one layout
    assert SimulatedLLM(seed=1).write([third])[0] != reply or len(set(replies)) > 1


def test_dedup_question_answers_yes_for_the_same_idea_only():
    llm = SimulatedLLM()
    ask = lambda a, b: parse_yes_no(llm.write([dedup_request(a, b)])[0])
    assert ask("Prefer older, classic films.", "Look for vintage titles. This is where my answer went wrong.") is True
    assert ask("Prefer older, classic films.", "Prefer lesser-known, niche films.") is False
    assert ask("Make space for Comedy films near the top.", "Give Comedy titles more room in the list.") is True
    assert ask("Make space for Comedy films near the top.", "Make space for Drama films near the top.") is False
    assert parse_yes_no("<think>no idea</think>Yes, the same.") is True and parse_yes_no("Maybe.") is None


def test_every_hint_fixed_its_session_and_names_no_true_item(dataset, tmp_path):
    report = build(dataset, tmp_path)
    kb, counts = report.kb, report.counts
    assert len(kb) == 6 and counts["added"] == 6
    assert counts["failed_validation"] > 0 and counts["hints_extracted"] > counts["added"]
    llm = SimulatedLLM()
    for hint, record in zip(kb, kb.hint_provenance):
        row = record["session_row"]
        assert record["session_id"] == str(dataset.session_ids[row]) and row in set(dataset.indices("train"))
        history, candidates = dataset.session_items(row)
        request = RankRequest(tuple(history), tuple(candidates), None, dataset.domain)
        pos = int(dataset.target_pos[row])
        without, with_hint = (target_rank(llm.rank([request.with_hint(h)])[0], pos) for h in (None, hint))
        assert not 1 <= without <= 10 and 1 <= with_hint <= 10
        assert (record["rank_without"], record["rank_with"]) == (without, with_hint)
        assert not leaks_title(hint, candidates[pos].title)
    assert [r["order"] for r in kb.hint_provenance] == sorted(r["order"] for r in kb.hint_provenance)
    assert kb.provenance["split"] == "train" and kb.provenance["backend"] == SimulatedLLM().name


def test_leaking_hints_are_rejected_and_counted(dataset, tmp_path):
    report = build(dataset, tmp_path, max_hints=20, max_sessions=N_TRAIN)
    assert report.counts["leaked"] > 0
    for hint in report.kb:
        assert not any(leaks_title(hint, item.title) for item in dataset.catalog.items
                       if item.title.split(" (")[0] in hint)


def test_calls_are_backend_calls_per_stage_and_a_second_run_makes_none(dataset, tmp_path):
    first = build(dataset, tmp_path)
    cache = ResponseCache(tmp_path / "r.sqlite")
    assert sum(first.calls.values()) == len(cache) + cache.n_texts()
    assert first.calls == first.cost and set(first.calls) == set(STAGES)
    assert first.calls["reflect"] == first.calls["analyse"] == first.calls["hint"] == first.counts["error_sessions"]
    assert first.calls["answer"] == first.counts["sessions_answered"] and first.calls["dedup"] > 0
    again = build(dataset, tmp_path)
    assert sum(again.calls.values()) == 0 and again.cost == first.cost
    assert again.kb.to_json() == first.kb.to_json()  # deterministic


def test_embedding_dedup_drops_near_copies_by_cosine(dataset, tmp_path):
    loose = build(dataset, tmp_path, max_hints=12, dedup="embedding", encoder="hashing", similarity=0.99)
    strict = build(dataset, tmp_path, max_hints=12, dedup="embedding", encoder="hashing", similarity=0.5)
    assert loose.calls["dedup"] == strict.calls["dedup"] == 0
    assert strict.counts["duplicates"] > loose.counts["duplicates"]
    from rec_gym.data.embeddings import HashingEncoder

    vectors = HashingEncoder().encode(list(strict.kb))
    sims = vectors @ vectors.T
    assert np.max(sims[~np.eye(len(strict.kb), dtype=bool)]) < 0.5 + 1e-6
    assert strict.kb.provenance["options"]["similarity"] == 0.5


def test_support_keeps_only_hints_that_do_not_hurt_other_sessions(dataset, tmp_path):
    report = build(dataset, tmp_path, max_hints=8, support=True, support_sessions=16)
    assert report.counts["support_dropped"] > 0 and report.calls["support"] > 0
    llm = SimulatedLLM()
    for hint, record in zip(report.kb, report.kb.hint_provenance):
        assert record["support_gain"] >= 0
    # Recompute one hint's gain from scratch on the same sample.
    rows = np.random.default_rng([0, 1]).permutation(dataset.indices("train").astype(np.int64))[:16 + 8]
    hint, record = report.kb[0], report.kb.hint_provenance[0]
    others = [int(r) for r in rows if int(r) != record["session_row"]][:16]
    gains = []
    for row in others:
        history, candidates = dataset.session_items(row)
        request = RankRequest(tuple(history), tuple(candidates), None, dataset.domain)
        pos = int(dataset.target_pos[row])
        gains.append(ndcg_at_k(target_rank(llm.rank([request.with_hint(hint)])[0], pos))
                     - ndcg_at_k(target_rank(llm.rank([request])[0], pos)))
    assert record["support_gain"] == pytest.approx(float(np.mean(gains)), abs=1e-6)


class SlowSimulated(SimulatedLLM):
    """The simulated backend, slowed down per call so that a test can kill a build mid-run."""

    def rank(self, requests):
        time.sleep(float(os.environ.get("REC_GYM_TEST_DELAY", "0")))
        return super().rank(requests)

    def write(self, requests):
        time.sleep(float(os.environ.get("REC_GYM_TEST_DELAY", "0")))
        return super().write(requests)


def make_slow_simulated() -> SlowSimulated:
    """Factory for ``rec-gym build-kb --backend-factory test_knowledge_build:make_slow_simulated``."""
    return SlowSimulated()


def _build_kb_process(tmp_path: Path, name: str, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "REC_GYM_TEST_DELAY": str(delay)}
    cmd = [sys.executable, "-m", "rec_gym.cli", "build-kb", "--env-kwargs", f"n_train={N_TRAIN}", "--no-progress",
           "--backend-factory", "test_knowledge_build:make_slow_simulated", "--max-hints", "6", "--dedup", "llm",
           "--support", "--support-sessions", "8", "--response-cache", str(tmp_path / f"{name}.sqlite"),
           "--out", str(tmp_path / name / "kb.json")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stored(path: Path) -> int:
    if not path.exists():
        return 0
    cache = ResponseCache(path)
    try:
        return len(cache) + cache.n_texts()
    finally:
        cache.close()


def _calls(output: str) -> int:
    line = next(line for line in output.splitlines() if line.startswith("LLM calls this run"))
    return int(line.rsplit("total ", 1)[1])


def test_build_kb_killed_mid_run_resumes_at_no_extra_llm_cost(tmp_path):
    killed = _build_kb_process(tmp_path, "resumed", delay=0.05)
    deadline = time.monotonic() + 120
    while _stored(tmp_path / "resumed.sqlite") < 30:
        assert killed.poll() is None, killed.stdout.read()
        assert time.monotonic() < deadline, "the build never got going"
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(30)
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "resumed" / "kb.json").exists()
    killed_calls = _stored(tmp_path / "resumed.sqlite")  # every call the killed run finished is stored

    resumed = _build_kb_process(tmp_path, "resumed", delay=0.0)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    clean = _build_kb_process(tmp_path, "clean", delay=0.0)
    clean_out, _ = clean.communicate(timeout=120)
    assert clean.returncode == 0, clean_out

    assert 0 < _calls(out) < _calls(clean_out)
    assert _calls(out) + killed_calls == _calls(clean_out)
    assert (tmp_path / "resumed" / "kb.json").read_bytes() == (tmp_path / "clean" / "kb.json").read_bytes()
    kb = json.loads((tmp_path / "clean" / "kb.json").read_text())
    assert 0 < len(kb["hints"]) == kb["provenance"]["counts"]["added"] <= 6 and sum(kb["provenance"]["llm_calls"].values()) == _calls(clean_out)


def test_the_reflection_conversation_grows_turn_by_turn_over_an_openai_server(dataset, tmp_path, monkeypatch):
    from llm_fixtures import ChatServer

    from rec_gym.llm import make_llm

    monkeypatch.setenv("REC_GYM_TEST_KEY", "sk-test")
    with ChatServer() as server:
        backend = make_llm("openai:test-model", base_url=server.base_url, api_key_env="REC_GYM_TEST_KEY", timeout=5.0)
        # The test server echoes every chat turn, and its echo of the hint request fixes no session.
        with pytest.raises(ValueError, match="no hint survived"):
            build_knowledge_base(dataset, backend, max_hints=3, max_sessions=8, progress=False,
                                 response_cache=tmp_path / "r.sqlite")
    chats = [b["messages"] for b in server.bodies if len(b["messages"]) > 1]
    assert chats and sorted({len(m) for m in chats}) == [3, 5, 7]
    longest = max(chats, key=len)
    assert [m["role"] for m in longest] == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert longest[4]["content"].startswith("The movie I watched next is: ")
    assert longest[5]["content"].startswith("You said: The movie I watched next is")
    assert ResponseCache(tmp_path / "r.sqlite").n_texts() == len(chats)


class RankOnly:
    """A backend that ranks (everything in candidate order) and cannot write."""

    name = "rank-only"

    def rank(self, requests):
        return [list(range(len(r.candidates))) for r in requests]


def test_build_kb_reports_a_bad_option_or_a_backend_that_cannot_write_in_one_line(tmp_path, capsys):
    from rec_gym.cli import main

    assert main(["build-kb", "--max-hints", "0", "--out", str(tmp_path / "kb.json"), "--no-progress"]) == 2
    assert "rec-gym build-kb: error: max_hints must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="'rank-only' ranks but does not write text"):
        build_knowledge_base(load_dataset("synthetic", n_train=10), RankOnly(), response_cache=tmp_path / "r.sqlite")
