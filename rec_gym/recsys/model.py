"""Trained sequential recommenders: SASRec (plain or knowledge-augmented), popularity, and their files.

A recommender scores every catalog item for a batch of sessions:
``scores(histories, texts=None) -> float32 (n_sessions, n_items)``, where ``histories`` are arrays of
catalog indices oldest first and ``texts`` (knowledge-augmented SASRec only) are preference-text
embeddings, float32 ``(n_sessions, text_dim)``, with NaN rows for "no text".

A SASRec recommender is stored as a folder: ``model.safetensors`` (the weights, and every item's text
vector for a model with item texts; no pickle) and ``config.json`` (the model's shape, the dataset it
was trained on, the text encoder, the training arguments, the measured metrics, the SHA-256 of the
weights file and of the config itself).

A folder may come from someone else, so :meth:`SASRecRecommender.load` trusts nothing in it:

- sizes: the config's model fields are checked against :data:`MODEL_LIMITS` and the parameter count
  against :data:`MAX_PARAMETERS` (2 GB of float32 weights), and the files' sizes against what that
  shape needs, before anything is allocated or read;
- hashes: the config's own checksum and the weights file's SHA-256 are verified before the weights are
  deserialised, so a flipped byte, a half-finished save or a folder mixing two saves is refused;
- the text encoder: a folder may name a built-in encoder (``minilm``, ``hashing``, ``hashing-<dim>``),
  which loads no model and reaches no network. Any other (``st:<model or path>``) is refused unless the
  caller names that same encoder in ``load(path, encoder=...)``: a received folder cannot make this
  package download a model or read a local path.

:meth:`SASRecRecommender.save` writes the weights, then the config (which holds the weights' hash),
each fsynced and renamed into place, under an exclusive lock on the folder; ``load`` reads under a
shared lock. A save killed between the two files leaves a folder that ``load`` refuses, never one it
accepts with another model's weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rec_gym.data.embeddings import builtin_encoder_dim
from rec_gym.data.types import SessionDataset
from rec_gym.recsys.sasrec import SASRec, SASRecConfig, left_padded
from rec_gym.recsys.sequences import session_sequences
from rec_gym.storage import folder_lock, read_limited, write_bytes_durably

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "rec_gym-sasrec-v1"
# The largest model a folder may describe, field by field (SASRecConfig's names) and in all.
MODEL_LIMITS = {"n_items": 5_000_000, "max_len": 1_024, "dim": 1_024, "n_blocks": 16, "n_heads": 64,
                "text_dim": 4_096, "adaptor_hidden": 4_096, "item_text_dim": 4_096, "match_dim": 4_096}
# Fields added after the first folders were saved: a folder without them gets their defaults (ID-only items).
OPTIONAL_MODEL_FIELDS = ("item_text_dim", "match_dim")
MAX_PARAMETERS = 500_000_000
MAX_CONFIG_BYTES = 4 << 20
# A safetensors header (tensor names, shapes, offsets) beside the float32 data.
MAX_WEIGHTS_HEADER_BYTES = 1 << 20
RETRAIN = "train it again with `rec-gym train-recsys --out ...`"


class PopularityRecommender:
    """Scores an item by how often it occurs in what the recommenders learn from: the training sessions
    (history and target) and the other sessions' histories (see :func:`~rec_gym.recsys.sequences.training_sequences`;
    ``sessions=``: the same sessions with longer histories, as SASRec's training reads them).

    Ties (items seen equally often, most of a long-tail catalog) are broken by a fixed seeded order,
    so the ranking is deterministic and no item gains from its catalog position.
    """

    name = "popularity"

    def __init__(self, dataset: SessionDataset, seed: int = 0, sessions: SessionDataset | None = None) -> None:
        items = np.concatenate([np.zeros(0, dtype=np.int64), *session_sequences(dataset, sessions)]).astype(np.int64)
        counts = np.bincount(items, minlength=len(dataset.catalog)).astype(np.float64)
        jitter = np.random.default_rng(seed).random(len(dataset.catalog)) * 0.5
        self.item_scores = (counts + jitter).astype(np.float32)

    def scores(self, histories: Sequence[np.ndarray], texts: np.ndarray | None = None) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(histories), self.item_scores.size)).copy()


class SASRecRecommender:
    """A trained :class:`~rec_gym.recsys.sasrec.SASRec` and what it was trained with.

    Attributes:
        model: the network, in eval mode, on the CPU.
        config: its :class:`SASRecConfig`.
        info: the ``config.json`` record: dataset name and fingerprint, ``encoder`` (the text encoder
            spec of a knowledge-augmented model, else ``None``), training arguments, metrics.
    """

    def __init__(self, model: SASRec, info: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.info = dict(info or {})

    @property
    def name(self) -> str:
        return "sasrec-ka" if self.config.knowledge else "sasrec"

    @property
    def encoder(self) -> str | None:
        return self.info.get("encoder")

    @torch.no_grad()
    def scores(self, histories: Sequence[np.ndarray], texts: np.ndarray | None = None,
               batch_size: int = 512) -> np.ndarray:
        """float32 ``(len(histories), n_items)``; ``texts`` float32 ``(n, text_dim)``, NaN rows = no text."""
        if texts is not None and not self.config.knowledge:
            raise ValueError("this SASRec was trained without preference texts (text_dim=0); pass texts=None or "
                             "train a knowledge-augmented model (train-recsys --knowledge)")
        out = np.empty((len(histories), self.config.n_items), dtype=np.float32)
        items = self.model.item_vectors()
        for start in range(0, len(histories), batch_size):
            stop = min(start + batch_size, len(histories))
            tokens = torch.from_numpy(left_padded(list(histories[start:stop]), self.config.max_len))
            text = has = None
            if texts is not None:
                block = np.asarray(texts[start:stop], dtype=np.float32)
                has_np = ~np.isnan(block).any(axis=1)
                text, has = torch.from_numpy(np.nan_to_num(block)), torch.from_numpy(has_np)
            hidden = self.model(tokens, text, has)[:, -1]
            out[start:stop] = (hidden @ items.T).numpy()
        return out

    def weights_hash(self) -> str:
        """SHA-256 (16 hex) of the weights: names the model in score tables' provenance."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode("utf-8"))
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``out/model.safetensors``, then ``out/config.json`` with both hashes, under the folder's lock."""
        from safetensors.torch import save as serialise

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        weights = serialise({k: v.contiguous() for k, v in self.model.state_dict().items()})
        record = {k: v for k, v in self.info.items() if k != "config_sha256"}
        record.update(format=FORMAT, model=self.config.to_dict(), weights_sha256_16=self.weights_hash(),
                      weights_sha256=hashlib.sha256(weights).hexdigest())
        record["config_sha256"] = _config_checksum(record)
        with folder_lock(out):
            write_bytes_durably(out / WEIGHTS_FILE, weights)
            write_bytes_durably(out / CONFIG_FILE, json.dumps(record, indent=2, sort_keys=True).encode("utf-8"))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: str | None = None) -> "SASRecRecommender":
        """Read a folder written by :meth:`save` (no pickle: safetensors and JSON), checked as the module says.

        Args:
            path: the folder.
            encoder: an ``"st:<model or path>"`` text encoder that you trust this folder to use; needed only
                when the folder names an encoder outside the built-ins, and only that same encoder is accepted.

        Raises:
            FileNotFoundError: the folder lacks one of its two files.
            ValueError: one line naming the file, the field and the fix, for anything else that is wrong.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load as deserialise

        path = Path(path)
        config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"{path} is not a trained recommender: expected {CONFIG_FILE} and {WEIGHTS_FILE} "
                                    "(written by `rec-gym train-recsys --out ...`)")
        with folder_lock(path, shared=True):
            info = _read_config(config_path, encoder)
            expected = _expected_shapes(config_path, SASRecConfig(**info["model"]))
            n_bytes = 4 * sum(int(np.prod(shape)) for shape in expected.values())
            size = weights_path.stat().st_size
            if not n_bytes < size <= n_bytes + MAX_WEIGHTS_HEADER_BYTES:
                raise ValueError(f"{weights_path} is {size:,} bytes, but the model in {config_path} needs {n_bytes:,} "
                                 f"bytes of weights (the file is truncated, or from another save); {RETRAIN}")
            weights = read_limited(weights_path, n_bytes + MAX_WEIGHTS_HEADER_BYTES, RETRAIN)
        if "weights_sha256" in info and hashlib.sha256(weights).hexdigest() != info["weights_sha256"]:
            raise ValueError(f"{weights_path} does not match field \"weights_sha256\" of {config_path}: the folder was "
                             f"altered or damaged, or its save was interrupted; save it again or {RETRAIN}")
        try:
            tensors = deserialise(weights)
        except SafetensorError as exc:
            raise ValueError(f"{weights_path}: not a readable safetensors file ({exc}); {RETRAIN}") from None
        got = {k: tuple(v.shape) for k, v in tensors.items() if v.dtype == torch.float32}
        if got != expected:
            wrong = sorted(set(got.items()) ^ set(expected.items()))[:1]
            raise ValueError(f"{weights_path}: tensors do not match the model in {config_path} (first difference: "
                             f"{wrong}); {RETRAIN}")
        model = SASRec(SASRecConfig(**info.pop("model")))
        model.load_state_dict(tensors)
        loaded = cls(model, info)
        if "weights_sha256" not in info and loaded.weights_hash() != info["weights_sha256_16"]:
            # A folder saved before config.json held the file's hash: its weights' hash is checked instead.
            raise ValueError(f"{weights_path} does not match field \"weights_sha256_16\" of {config_path}: the folder "
                             f"was altered or damaged, or its save was interrupted; {RETRAIN}")
        return loaded


def _config_checksum(record: dict[str, Any]) -> str:
    """SHA-256 of a config record without its ``config_sha256`` field, in a canonical JSON form."""
    body = {k: v for k, v in record.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _is_hex(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def _read_config(config_path: Path, encoder: str | None) -> dict[str, Any]:
    """The checked ``config.json`` record of a recommender folder (see the module docstring)."""
    def refuse(what: str, fix: str = RETRAIN) -> ValueError:
        return ValueError(f"{config_path}: {what}; {fix}")

    raw = read_limited(config_path, MAX_CONFIG_BYTES, RETRAIN)
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise refuse(f"not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(info, dict):
        raise refuse(f"expected a JSON object, got {type(info).__name__}")
    if info.get("format") != FORMAT:
        raise refuse(f"field \"format\" is {str(info.get('format'))[:40]!r}, not {FORMAT!r}")
    if "config_sha256" in info or "weights_sha256" in info:
        if not (_is_hex(info.get("config_sha256"), 64) and _is_hex(info.get("weights_sha256"), 64)):
            raise refuse("fields \"config_sha256\" and \"weights_sha256\" must be 64 hex digits each")
        if info["config_sha256"] != _config_checksum(info):
            raise refuse("the file does not match its field \"config_sha256\" (it was edited or damaged)",
                         f"restore it or {RETRAIN}")
    elif not _is_hex(info.get("weights_sha256_16"), 16):  # a folder saved before the file hashes
        raise refuse("it holds no weights hash (fields \"weights_sha256\" and \"config_sha256\")")
    model = info.get("model")
    fields = set(SASRecConfig.__dataclass_fields__)
    if not isinstance(model, dict) or not fields - set(OPTIONAL_MODEL_FIELDS) <= set(model) <= fields:
        raise refuse(f"field \"model\" must be an object with the fields {sorted(fields)} "
                     f"({', '.join(OPTIONAL_MODEL_FIELDS)} may be left out)")
    defaults = SASRecConfig(n_items=2)
    for name in OPTIONAL_MODEL_FIELDS:
        model.setdefault(name, getattr(defaults, name))
    for name, limit in MODEL_LIMITS.items():
        value = model[name]
        low = 0 if name in ("text_dim", "item_text_dim") else 2 if name == "n_items" else 1
        if type(value) is not int or not low <= value <= limit:
            raise refuse(f"field \"model.{name}\" is {str(value)[:40]}; it must be an integer from {low} to {limit:,} "
                         "(rec_gym.recsys.model.MODEL_LIMITS)")
    dropout = model["dropout"]
    if type(dropout) not in (int, float) or not 0.0 <= dropout < 1.0:
        raise refuse(f"field \"model.dropout\" is {str(dropout)[:40]}; it must be a number in [0, 1)")
    if model["dim"] % model["n_heads"]:
        raise refuse(f"field \"model.dim\" ({model['dim']}) is not divisible by \"model.n_heads\" ({model['n_heads']})")
    if model["item_text_dim"] not in (0, model["text_dim"]):
        raise refuse(f"field \"model.item_text_dim\" is {model['item_text_dim']}; it must be 0 or \"model.text_dim\" "
                     f"({model['text_dim']}): one encoder embeds items and preference texts")
    _check_encoder_field(info.get("encoder"), model["text_dim"], encoder, refuse)
    return info


def _check_encoder_field(named: Any, text_dim: int, trusted: str | None, refuse: Any) -> None:
    """A folder's ``encoder`` must be absent for a plain model, else a built-in of width ``text_dim`` or ``trusted``."""
    if text_dim == 0:
        if named is not None:
            raise refuse(f"field \"encoder\" is {str(named)[:80]!r} but \"model.text_dim\" is 0 (a model without "
                         "preference texts); set it to null")
        return
    if not isinstance(named, str):
        raise refuse(f"field \"encoder\" must name the text encoder of a model with text_dim={text_dim}, got "
                     f"{str(named)[:80]!r}")
    width = builtin_encoder_dim(named)
    if width is None and named != trusted:
        raise refuse(f"field \"encoder\" is {named[:200]!r}, not a built-in encoder (minilm, hashing, "
                     "hashing-<dim>), and a received folder cannot choose a model to load",
                     "if you trust that model, name it yourself: "
                     f"SASRecRecommender.load(path, encoder={named[:200]!r})")
    if width is not None and width != text_dim:
        raise refuse(f"field \"encoder\" is {named!r}, {width}-dimensional, but \"model.text_dim\" is {text_dim}")


def _expected_shapes(config_path: Path, config: SASRecConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's shape for ``config``, from a model built on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in SASRec(config).state_dict().items()}
    n_parameters = sum(int(np.prod(shape)) for shape in shapes.values())
    if n_parameters > MAX_PARAMETERS:
        raise ValueError(f"{config_path}: field \"model\" describes {n_parameters:,} parameters "
                         f"({4 * n_parameters / 2**30:.1f} GiB), more than rec_gym.recsys.model.MAX_PARAMETERS = "
                         f"{MAX_PARAMETERS:,}; {RETRAIN} with a smaller dim or catalog")
    return shapes


def candidate_ranks(scores: np.ndarray, dataset: SessionDataset, rows: np.ndarray) -> np.ndarray:
    """int64 ``(len(rows),)``: 1-based rank of each session's target among its candidates by ``scores``.

    ``scores`` is float ``(len(rows), n_items)``. A candidate tied with the target ranks above it when
    it comes earlier in the (shuffled) candidate order, so ties are broken the same way everywhere.
    """
    ranks = np.empty(len(rows), dtype=np.int64)
    for k, row in enumerate(rows):
        cand = dataset.candidates_of(int(row))
        s = scores[k, cand]
        pos = int(dataset.target_pos[row])
        ranks[k] = 1 + int(np.sum(s > s[pos])) + int(np.sum(s[:pos] == s[pos]))
    return ranks


def catalog_ranks(scores: np.ndarray, dataset: SessionDataset, rows: np.ndarray) -> np.ndarray:
    """int64 ``(len(rows),)``: 1-based rank of each target among all catalog items, the session's own
    history items excluded (a next item is a new item in these datasets)."""
    ranks = np.empty(len(rows), dtype=np.int64)
    for k, row in enumerate(rows):
        s = scores[k].astype(np.float64)
        s[dataset.history_of(int(row))] = -np.inf
        target = int(dataset.target[row])
        ranks[k] = 1 + int(np.sum(s > s[target])) + int(np.sum(s[:target] == s[target]))
    return ranks
