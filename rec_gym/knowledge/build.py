"""Reflective exploration (Re2LLM's first stage): the frozen LLM writes the knowledge base from its own mistakes.

:func:`build_knowledge_base` walks the training split only, in a seeded order:

1. **answer** - rank each session's candidates with no hint; sessions whose top 10 miss the true
   item are *error sessions*;
2. **reflect, analyse, hint** - hold the three-turn reflection conversation of
   :mod:`rec_gym.knowledge.reflection` for each error session, and extract the hints of the last reply
   (:func:`~rec_gym.knowledge.extraction.extract_hints`); a hint naming the true item is rejected
   (:func:`~rec_gym.knowledge.extraction.leaks_title`);
3. **validate** - re-rank that session with each hint appended; keep the hints that put the true item
   into the top 10;
4. **dedup** - a kept hint enters only if it is not the same idea as a hint already there: the LLM's
   yes/no answer (``dedup="llm"``, one question per hint already in the KB) or an embedding cosine
   similarity below a threshold (``dedup="embedding"``);
5. **support** (optional, beyond the paper) - the hint's mean NDCG@10 gain over no hint on a fixed
   sample of other training sessions must not be negative;

until the KB holds ``max_hints`` hints or ``max_sessions`` sessions have been answered.

Every LLM call goes through :class:`~rec_gym.llm.response_cache.CachedBackend`, so a run killed at any
point and run again replays what it had from the cache: the rerun's backend calls plus the killed
run's equal one uninterrupted run's, and the KB is the same. For a deterministic backend the whole
build is deterministic. The calls are counted per stage twice: ``calls`` are the backend calls this
run made (cache hits are not calls), ``cost`` the distinct requests the KB needs from an empty cache
(recorded in the KB's provenance).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from rec_gym.data.types import SessionDataset
from rec_gym.knowledge.base import KnowledgeBase, _normalised
from rec_gym.knowledge.extraction import extract_hints, leaks_title
from rec_gym.knowledge.reflection import (REFLECTION_TEMPLATE_VERSION, TOP_K, dedup_request, next_turn, parse_yes_no,
                                          reflection_turns)
from rec_gym.llm.prompts import TEMPLATE_VERSION
from rec_gym.llm.protocol import GenerateRequest, LLMBackend, RankRequest, can_write, target_rank
from rec_gym.llm.response_cache import CachedBackend, generation_key, request_key
from rec_gym.metrics import ndcg_at_k

STAGES = ("answer", "reflect", "analyse", "hint", "validate", "dedup", "support")
DEDUP_MODES = ("llm", "embedding")


@dataclass
class BuildReport:
    """What a build did.

    Attributes:
        kb: the knowledge base (its ``provenance`` holds the options, ``cost`` and ``counts``).
        calls: backend calls this run made, per stage (cache hits are not calls).
        cost: distinct LLM requests per stage the KB needs from an empty response cache (a request two
            stages share, e.g. a support session's no-hint ranking that was also answered, counts once, for
            the stage that asked first).
        counts: sessions answered, error sessions, hints extracted, leaked, failed validation, duplicates,
            dropped by support, added.
    """

    kb: KnowledgeBase
    calls: dict[str, int]
    cost: dict[str, int]
    counts: dict[str, int]

    def summary(self) -> str:
        """Several lines for a terminal: counts, then the LLM calls per stage."""
        c = self.counts
        lines = [f"{len(self.kb)} hints from {c['error_sessions']} error sessions of {c['sessions_answered']} training "
                 f"sessions answered: {c['hints_extracted']} hints extracted, {c['leaked']} rejected for naming the "
                 f"true item, {c['failed_validation']} failed validation, {c['duplicates']} duplicates, "
                 f"{c['support_dropped']} dropped by support, {c['added']} added",
                 "LLM calls this run (cache hits not counted): " + ", ".join(f"{s} {self.calls[s]}" for s in STAGES)
                 + f"; total {sum(self.calls.values())}",
                 "LLM calls the KB costs from an empty cache: " + ", ".join(f"{s} {self.cost[s]}" for s in STAGES)
                 + f"; total {sum(self.cost.values())}"]
        return "\n".join(lines)


@dataclass
class _Counter:
    """Per-stage backend calls (cache misses) and distinct requests."""

    backend: CachedBackend
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    cost: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    seen: set[str] = field(default_factory=set)

    def _note(self, stage: str, keys: Sequence[str]) -> None:
        fresh = {k for k in keys if k not in self.seen}
        self.cost[stage] += len(fresh)
        self.seen |= fresh

    def rank(self, stage: str, requests: Sequence[RankRequest]) -> list:
        if not requests:
            return []
        self._note(stage, [request_key(self.backend.name, r) for r in requests])
        before = self.backend.misses
        out = self.backend.rank(requests)
        self.calls[stage] += self.backend.misses - before
        return out

    def write(self, stage: str, requests: Sequence[GenerateRequest]) -> list[str]:
        if not requests:
            return []
        self._note(stage, [generation_key(self.backend.name, r) for r in requests])
        before = self.backend.misses
        out = self.backend.write(requests)
        self.calls[stage] += self.backend.misses - before
        return out


def _session(dataset: SessionDataset, row: int) -> tuple[RankRequest, int]:
    history, candidates = dataset.session_items(int(row))
    return RankRequest(tuple(history), tuple(candidates), None, dataset.domain), int(dataset.target_pos[row])


def _rank_of(ranking: Any, target_pos: int) -> int:
    return 0 if ranking is None else target_rank(ranking, target_pos)


def build_knowledge_base(dataset: SessionDataset, backend: LLMBackend, *, max_hints: int = 20,
                         max_sessions: int | None = None, dedup: str = "llm", similarity: float = 0.85,
                         encoder: Any = "minilm", support: bool = False, support_sessions: int = 32,
                         seed: int = 0, response_cache: "str | os.PathLike | None" = None,
                         sessions_per_batch: int = 8, max_new_tokens: int = 512, name: str | None = None,
                         progress: bool = True) -> BuildReport:
    """Build a knowledge base from the LLM's mistakes on ``dataset``'s training split (module docstring).

    Args:
        dataset: the sessions; only ``dataset.indices("train")`` are read.
        backend: a backend that ranks and writes (``simulated``, ``hf:``, ``openai:``); wrapped in a
            :class:`~rec_gym.llm.response_cache.CachedBackend` on ``response_cache`` unless it is one.
        max_hints: K, the most hints in the KB (action space ``Discrete(K + 1)``).
        max_sessions: the most training sessions answered (default: all of them).
        dedup: ``"llm"`` (the LLM's yes/no answer) or ``"embedding"`` (cosine similarity of ``encoder``'s
            embeddings, a duplicate at ``>= similarity``).
        similarity: the cosine threshold of ``dedup="embedding"``, in [-1, 1].
        encoder: text encoder of ``dedup="embedding"``: ``"minilm"`` (offline MiniLM), ``"hashing"`` or an object.
        support: keep only hints whose mean NDCG@10 gain on ``support_sessions`` other training sessions
            is not negative.
        seed: the order the training sessions are visited in, and the support sample.
        sessions_per_batch: sessions answered (and error sessions reflected on) per backend call.
        max_new_tokens: the token budget of each reflection turn.
    """
    if dedup not in DEDUP_MODES:
        raise ValueError(f"dedup={dedup!r}: choose one of {DEDUP_MODES}")
    if max_hints < 1:
        raise ValueError(f"max_hints must be >= 1, got {max_hints}")
    if not -1.0 <= similarity <= 1.0:
        raise ValueError(f"similarity={similarity}: a cosine threshold lies in [-1, 1]")
    cached = backend if isinstance(backend, CachedBackend) else CachedBackend(backend, response_cache)
    if not can_write(cached):
        raise ValueError(f"backend {cached.name!r} ranks but does not write text; reflection needs simulated, "
                         "hf:<model> or openai:<model>")
    llm = _Counter(cached)
    train = dataset.indices("train").astype(np.int64)
    if train.size == 0:
        raise ValueError(f"dataset {dataset.name!r} has no training sessions to reflect on")
    order = np.random.default_rng(seed).permutation(train)
    if max_sessions is not None:
        order = order[:max_sessions]
    encode = None
    if dedup == "embedding":
        from rec_gym.data.embeddings import make_encoder

        text_encoder = make_encoder(encoder)
        encode = text_encoder.encode
    counts = dict.fromkeys(("sessions_answered", "error_sessions", "hints_extracted", "leaked", "failed_validation",
                            "duplicates", "support_dropped", "added"), 0)
    hints: list[str] = []
    records: list[dict[str, Any]] = []
    embeddings: list[np.ndarray] = []
    support_base: dict[int, int] | None = None
    support_rows = np.random.default_rng([seed, 1]).permutation(train)[:support_sessions + sessions_per_batch]
    created = 0
    bar = tqdm(total=len(order), desc="build-kb sessions", unit="session", disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, len(order), sessions_per_batch):
            if len(hints) >= max_hints:
                break
            rows = order[start:start + sessions_per_batch]
            sessions = [_session(dataset, row) for row in rows]
            rankings = llm.rank("answer", [r for r, _ in sessions])
            counts["sessions_answered"] += len(rows)
            errors = [(int(row), request, pos, ranking) for row, (request, pos), ranking in zip(rows, sessions, rankings)
                      if not 1 <= _rank_of(ranking, pos) <= TOP_K]
            counts["error_sessions"] += len(errors)
            bar.update(len(rows))
            if not errors:
                continue
            # The three turns, each for all error sessions of the batch at once.
            turns = [reflection_turns(request, ranking, pos, max_new_tokens) for _, request, pos, ranking in errors]
            reflections = llm.write("reflect", turns)
            turns = [next_turn(t, reply, "analyse") for t, reply in zip(turns, reflections)]
            analyses = llm.write("analyse", turns)
            turns = [next_turn(t, reply, "hint") for t, reply in zip(turns, analyses)]
            replies = llm.write("hint", turns)
            for (row, request, pos, ranking), turn, reply in zip(errors, turns, replies):
                if len(hints) >= max_hints:
                    break
                target = request.candidates[pos]
                found = extract_hints(reply)
                counts["hints_extracted"] += len(found)
                clean = [h for h in found if not leaks_title(h, target.title, [i.title for i in request.history])]
                counts["leaked"] += len(found) - len(clean)
                checks = llm.rank("validate", [request.with_hint(h) for h in clean])
                baseline = _rank_of(ranking, pos)
                transcript = generation_key(cached.name, turn)
                for hint, check in zip(clean, checks):
                    if len(hints) >= max_hints:
                        break
                    created += 1
                    fixed_rank = _rank_of(check, pos)
                    if not 1 <= fixed_rank <= TOP_K:
                        counts["failed_validation"] += 1
                        continue
                    if _is_duplicate(hint, hints, embeddings, llm, dedup, similarity, encode, dataset.domain):
                        counts["duplicates"] += 1
                        continue
                    record = {"session_id": str(dataset.session_ids[row]), "session_row": row,
                              "target": target.title, "rank_without": baseline, "rank_with": fixed_rank,
                              "validated": True, "order": created, "transcript_key": transcript}
                    if support:
                        if support_base is None:
                            support_base = _support_baseline(dataset, support_rows, llm)
                        gain = _support_gain(dataset, hint, row, support_rows, support_sessions, support_base, llm)
                        record["support_gain"] = round(gain, 6)
                        if gain < 0:
                            counts["support_dropped"] += 1
                            continue
                    hints.append(hint)
                    records.append(record)
                    if encode is not None:
                        embeddings.append(np.asarray(encode([hint])[0], dtype=np.float64))
                    counts["added"] += 1
                    bar.set_postfix(hints=len(hints))
    finally:
        bar.close()
    if not hints:
        raise ValueError(f"no hint survived on {dataset.name!r} ({counts}); answer more sessions (max_sessions) "
                         "or use another model")
    provenance = {
        "method": "re2llm-reflective-exploration", "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint,
        "domain": dataset.domain, "split": "train", "seed": int(seed), "backend": cached.name,
        "template_versions": {"rank": TEMPLATE_VERSION, "reflection": REFLECTION_TEMPLATE_VERSION},
        "options": {"max_hints": int(max_hints), "max_sessions": None if max_sessions is None else int(max_sessions),
                    "dedup": dedup, "similarity": float(similarity) if dedup == "embedding" else None,
                    "encoder": _encoder_label(encoder) if dedup == "embedding" else None,
                    "support": bool(support), "support_sessions": int(support_sessions) if support else None,
                    "sessions_per_batch": int(sessions_per_batch), "max_new_tokens": int(max_new_tokens)},
        "llm_calls": dict(llm.cost), "counts": dict(counts),
    }
    kb = KnowledgeBase(hints, name=name or f"built-{dataset.name}", source="build_knowledge_base",
                       provenance=provenance, hint_provenance=records)
    return BuildReport(kb, dict(llm.calls), dict(llm.cost), counts)


def _encoder_label(encoder: Any) -> str:
    from rec_gym.data.embeddings import encoder_name

    return encoder_name(encoder)


def _is_duplicate(hint: str, hints: list[str], embeddings: list[np.ndarray], llm: _Counter, dedup: str,
                  similarity: float, encode: Any, domain: str) -> bool:
    """Whether ``hint`` conveys the idea of a hint already in the KB (a normalised copy costs no call)."""
    if not hints:
        return False
    if _normalised(hint) in {_normalised(h) for h in hints}:
        return True
    if dedup == "llm":
        answers = llm.write("dedup", [dedup_request(hint, other, domain) for other in hints])
        return any(parse_yes_no(a) for a in answers)
    vector = np.asarray(encode([hint])[0], dtype=np.float64)
    sims = np.stack(embeddings) @ vector / (np.linalg.norm(np.stack(embeddings), axis=1) * np.linalg.norm(vector) + 1e-12)
    return bool(np.max(sims) >= similarity)


def _support_baseline(dataset: SessionDataset, rows: np.ndarray, llm: _Counter) -> dict[int, int]:
    sessions = [_session(dataset, row) for row in rows]
    rankings = llm.rank("support", [r for r, _ in sessions])
    return {int(row): _rank_of(ranking, pos) for row, (_, pos), ranking in zip(rows, sessions, rankings)}


def _support_gain(dataset: SessionDataset, hint: str, source_row: int, rows: np.ndarray, n: int,
                  base: dict[int, int], llm: _Counter) -> float:
    """Mean NDCG@10(hint) - NDCG@10(no hint) over ``n`` sample sessions other than the hint's own."""
    others = [int(r) for r in rows if int(r) != source_row][:n]
    sessions = [_session(dataset, row) for row in others]
    rankings = llm.rank("support", [r.with_hint(hint) for r, _ in sessions])
    with_hint = np.array([_rank_of(k, pos) for k, (_, pos) in zip(rankings, sessions)])
    without = np.array([base[row] for row in others])
    return float(np.mean(ndcg_at_k(with_hint, TOP_K) - ndcg_at_k(without, TOP_K)))
