"""DPO preference pairs from recommender feedback (RLRF4Rec step 4), and DPO training of an ``hf:`` model.

Per session, of the ``N`` sampled preference replies, the best one the recommender scores and the
worst one form a pair, in the format TRL's ``DPOTrainer`` reads (conversational: ``prompt`` is the
chat messages, ``chosen`` and ``rejected`` one assistant message each) plus the scores and the
provenance. Structure alignment: a reply that breaks the required ``Factors:``/``Preference:``
structure is never chosen, and when a session has one, it is the rejected reply (whatever its score),
so the tuned model learns the format; such pairs are kept whatever the margin. Otherwise a pair
whose score margin is not above ``margin`` carries no preference and is dropped (and counted).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rec_gym.extras import MissingExtra
from rec_gym.recsys.preferences import TEMPLATE_VERSION, preference_request
from rec_gym.storage import atomic_path

MAX_PAIR_LINE_BYTES = 1 << 20


@dataclass
class PairCounts:
    """What happened to each session: ``pairs`` written, of which ``structure`` pair a malformed reply;
    ``dropped_margin`` (best minus worst not above the margin), ``dropped_malformed`` (no well-formed reply)."""

    sessions: int = 0
    pairs: int = 0
    structure: int = 0
    dropped_margin: int = 0
    dropped_malformed: int = 0
    margin: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "pairs": self.pairs, "structure_pairs": self.structure,
                "dropped_margin": self.dropped_margin, "dropped_malformed": self.dropped_malformed,
                "margin": self.margin, **self.extra}


def preference_pairs(task: Any, margin: float = 0.0) -> tuple[list[dict[str, Any]], PairCounts]:
    """The DPO pairs of an :class:`~rec_gym.envs.rlrf4rec.RLRF4RecTask` (one per session at most), and the counts.

    Scores are the recommender's NDCG@10 of each reply (``task.ndcg[:, 1:]``).
    """
    counts = PairCounts(margin=float(margin))
    provenance = {"dataset": task.dataset.name, "dataset_fingerprint": task.dataset.fingerprint,
                  "split": task.split, "writer": task.writer.name, "template_version": TEMPLATE_VERSION,
                  "recommender": task.recommender.weights_hash(), "n_texts": task.n_texts,
                  "score": "NDCG@10 of the knowledge-augmented SASRec over the session's candidates"}
    pairs = []
    for i in range(task.n_sessions):
        scores = task.ndcg[i, 1:]
        picked = pick_pair(scores, task.well_formed[i], margin, counts)
        if picked is None:
            continue
        chosen, rejected, kind = picked
        row = int(task.rows[i])
        request = preference_request(task.dataset.session_items(row)[0], task.dataset.domain)
        pairs.append({"prompt": request.as_dicts(),
                      "chosen": [{"role": "assistant", "content": task.replies[i][chosen]}],
                      "rejected": [{"role": "assistant", "content": task.replies[i][rejected]}],
                      "chosen_score": float(scores[chosen]), "rejected_score": float(scores[rejected]),
                      "no_text_score": float(task.ndcg[i, 0]), "kind": kind,
                      "session_id": str(task.dataset.session_ids[row]), "provenance": provenance})
    return pairs, counts


def pick_pair(scores: np.ndarray, well_formed: np.ndarray, margin: float,
              counts: PairCounts) -> tuple[int, int, str] | None:
    """``(chosen, rejected, kind)`` among one session's replies (``scores``, ``well_formed``: ``(N,)``), as the
    module says, or ``None`` when the session gives no pair; ``counts`` records what happened."""
    counts.sessions += 1
    ok = np.asarray(well_formed, dtype=bool)
    if not ok.any():
        counts.dropped_malformed += 1
        return None
    good = np.flatnonzero(ok)
    chosen = int(good[np.argmax(scores[good])])
    bad = np.flatnonzero(~ok)
    if bad.size:
        rejected, kind = int(bad[np.argmin(scores[bad])]), "structure"
    else:
        rejected, kind = int(good[np.argmin(scores[good])]), "score"
        if scores[chosen] - scores[rejected] <= margin:
            counts.dropped_margin += 1
            return None
    counts.pairs += 1
    counts.structure += kind == "structure"
    return chosen, rejected, kind


def write_pairs(pairs: list[dict[str, Any]], out: str | os.PathLike) -> Path:
    """One JSON object per line, written atomically."""
    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for pair in pairs:
            fh.write(json.dumps(pair, ensure_ascii=False) + "\n")
    return out


def read_pairs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The pairs of a ``dpo-data`` file, checked line by line; an error names the file, the line and the field.

    Each line is a JSON object whose ``prompt``, ``chosen`` and ``rejected`` are a string or a list of chat
    messages (``{"role": str, "content": str}``); the scores, when present, are finite numbers. No line may
    exceed :data:`MAX_PAIR_LINE_BYTES`, and ``NaN``/``Infinity`` are not JSON here.
    """
    pairs = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(iter(lambda: fh.readline(MAX_PAIR_LINE_BYTES + 1), b""), 1):
            where = f"{path} line {number}"
            if len(raw) > MAX_PAIR_LINE_BYTES:
                raise ValueError(f"{where}: longer than rec_gym.recsys.dpo.MAX_PAIR_LINE_BYTES = "
                                 f"{MAX_PAIR_LINE_BYTES:,} bytes; write pairs with `rec-gym dpo-data`")
            if not raw.strip():
                continue
            pairs.append(_checked_pair(raw, where))
    if not pairs:
        raise ValueError(f"{path} holds no pairs; write pairs with `rec-gym dpo-data`")
    return pairs


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _checked_pair(raw: bytes, where: str) -> dict[str, Any]:
    """One line of a pairs file as a pair, or a ``ValueError`` starting with ``where`` (file and line)."""
    fix = "write pairs with `rec-gym dpo-data`"
    try:
        pair = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 (byte {exc.start}); {fix}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc.msg}); {fix}") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: {exc if isinstance(exc, ValueError) else 'nested too deeply'}; {fix}") from None
    if not isinstance(pair, dict):
        raise ValueError(f"{where}: expected a JSON object with prompt, chosen and rejected, got a "
                         f"{type(pair).__name__}; {fix}")
    missing = {"prompt", "chosen", "rejected"} - set(pair)
    if missing:
        raise ValueError(f"{where}: missing {', '.join(sorted(missing))}; {fix}")
    for field in ("prompt", "chosen", "rejected"):
        value = pair[field]
        ok = isinstance(value, str) or (isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value))
        if not ok:
            raise ValueError(f"{where}: field {field!r} must be a string or a list of messages "
                             f"{{\"role\": str, \"content\": str}}, got {json.dumps(value)[:80]}; {fix}")
    for field in ("chosen_score", "rejected_score", "no_text_score"):
        if field in pair and (type(pair[field]) not in (int, float) or not np.isfinite(pair[field])):
            raise ValueError(f"{where}: field {field!r} must be a finite number, got {json.dumps(pair[field])[:40]}; "
                             f"{fix}")
    return pair


def dpo_train(model_path: str | os.PathLike, pairs_path: str | os.PathLike, out: str | os.PathLike, *,
              steps: int = 100, batch_size: int = 2, lr: float = 5e-6, beta: float = 0.1, seed: int = 0,
              max_length: int = 512, sft_weight: float = 0.0) -> Path:
    """Tune the causal LM at ``model_path`` (a local folder, as ``hf:<path>`` loads it) with TRL's DPOTrainer.

    ``sft_weight > 0`` adds that weight times the chosen replies' negative log-likelihood to the DPO loss
    (RPO, TRL's ``loss_type=["sigmoid", "sft"]``): DPO alone can lower both replies' likelihood and let a
    small model's text degenerate, and the added term keeps the chosen replies likely.

    Writes the tuned model and its tokenizer to ``out`` (safetensors), so ``llm="hf:<out>"`` and the
    preference writer load it, and the loop generate -> score -> pair -> tune can run again.
    Needs the ``[dpo]`` extra (``pip install "rec_gym[dpo]"``: trl, datasets).
    """
    try:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer
    except ImportError as exc:
        raise MissingExtra("rec-gym dpo-train", "dpo", exc) from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pairs = read_pairs(pairs_path)
    records = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), trust_remote_code=False)
    out = Path(out)
    if not sft_weight >= 0:
        raise ValueError(f"sft_weight must be >= 0, got {sft_weight}")
    losses = dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, float(sft_weight)]) if sft_weight else {}
    config = DPOConfig(output_dir=str(out / "trainer"), max_steps=int(steps), per_device_train_batch_size=int(batch_size),
                       learning_rate=float(lr), beta=float(beta), seed=int(seed), max_length=int(max_length),
                       logging_steps=1, save_strategy="no", report_to=[],
                       use_cpu=not torch.cuda.is_available(), **losses)
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer)
    result = trainer.train()
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / "dpo.json").write_text(json.dumps({"base_model": str(model_path), "pairs": str(pairs_path),
                                              "n_pairs": len(records), "steps": int(steps), "beta": beta, "lr": lr,
                                              "seed": seed, "sft_weight": sft_weight,
                                              "train_loss": float(result.training_loss)}, indent=2))
    return out
