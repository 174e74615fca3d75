"""SASRec (Kang and McAuley, ICDM 2018) and its knowledge-augmented variant, in PyTorch.

SASRec reads a session's items oldest first and predicts the next one: item embeddings plus learned
position embeddings pass through causal self-attention blocks; the output at the last position is
the session's representation, and an item's score is its dot product with that item's embedding.
Training uses binary cross-entropy with one sampled negative per position, as in the paper.

The knowledge-augmented variant (``text_dim > 0``) also reads a preference text about the session,
as KAR (Xi et al., 2023) and RLRF4Rec (Sun et al., 2024) do: the text's embedding from a frozen
sentence encoder goes through a small trainable adaptor (two layers) whose output is added to the
session's representation (the output at the last position, which predicts the next item). A session without a text is represented by the sequence
alone (the adaptor's output is masked out), so the same model scores "no text" and "this text".

Items may also carry text-side knowledge (``item_text_dim > 0``, KAR's item side): each item's own text
(title and metadata) embedded once by the same frozen encoder, kept in the model as a fixed buffer. It
reaches the scores two ways:

- the item's representation is its ID embedding plus a projection of its text vector, so items that
  share genres, a creator or an era share part of their representation even when rarely seen;
- the preference text is matched against every item's text vector, KAR-style:
  ``score(item) = <h, e_item + P f_item> + <W_t t, W_i f_item>``, where ``t`` is the session's text
  vector and ``f_item`` the item's. ``W_t`` and ``W_i`` start as the same random projection, so before
  training the match term is a scaled cosine between the preference text and the item's text (the
  same encoder embedded both); training then reshapes it. Without a text the match term is 0.

Both terms are one dot product: :meth:`SASRec.forward` returns ``[h, W_t t]`` and
:meth:`SASRec.item_vectors` returns ``[e + P f, W_i f]``, so every caller scores with ``hidden @ items.T``.

Item numbering inside the model: catalog index ``i`` is token ``i + 1``; token 0 is padding.
Sequences are left-padded to ``max_len`` so the last position is always the most recent item.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class SASRecConfig:
    """Shape of a SASRec model.

    Attributes:
        n_items: catalog size; the model scores catalog indices ``0..n_items - 1``.
        max_len: positions read (the most recent ``max_len`` items of a session).
        dim: embedding and hidden size.
        n_blocks: self-attention blocks.
        n_heads: attention heads per block (``dim`` must be divisible by it).
        dropout: dropout rate on embeddings, attention and feed-forward layers.
        text_dim: 0 for plain SASRec; else the dimension of the preference-text embedding the
            knowledge adaptor reads (384 for MiniLM, 256 for the hashing encoder).
        adaptor_hidden: hidden width of the knowledge adaptor.
        item_text_dim: 0 for ID-only items; else ``text_dim`` (items' texts are embedded by the same
            encoder as the preference texts), and the model holds every item's text vector.
        match_dim: width of the projections that match a preference text against items' texts.
    """

    n_items: int
    max_len: int = 20
    dim: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    text_dim: int = 0
    adaptor_hidden: int = 128
    item_text_dim: int = 0
    match_dim: int = 64

    def __post_init__(self) -> None:
        if self.n_items < 2 or self.max_len < 1 or self.dim < 1 or self.n_blocks < 1:
            raise ValueError(f"bad SASRec config {self}: n_items >= 2, max_len, dim and n_blocks >= 1 are needed")
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.text_dim < 0:
            raise ValueError(f"text_dim must be >= 0, got {self.text_dim}")
        if self.item_text_dim not in (0, self.text_dim) or (self.item_text_dim and self.match_dim < 1):
            raise ValueError(f"item_text_dim={self.item_text_dim} must be 0 or text_dim={self.text_dim} (the same "
                             f"encoder embeds items and preference texts), with match_dim >= 1 (got {self.match_dim})")

    @property
    def knowledge(self) -> bool:
        """Whether the model reads preference texts."""
        return self.text_dim > 0

    @property
    def item_text(self) -> bool:
        """Whether items carry text vectors beside their IDs."""
        return self.item_text_dim > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SASRec(nn.Module):
    """The network: ``forward(tokens, text=None, has_text=None) -> (batch, max_len, width)`` hidden states.

    ``width`` is ``dim``, or ``dim + match_dim`` for a model with item texts; an item's score is the
    dot product of a hidden state with the item's row of :meth:`item_vectors` (same width).

    Args of ``forward``:
        tokens: int64 ``(batch, max_len)``, catalog index + 1, 0 = padding (left-padded).
        text: float32 ``(batch, text_dim)`` preference-text embeddings (knowledge variant only).
        has_text: bool ``(batch,)``: which rows have a text; rows without one ignore ``text``.
    """

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.dim)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(config.dim, config.n_heads, dim_feedforward=config.dim, dropout=config.dropout,
                                       activation="relu", batch_first=True, norm_first=True)
            for _ in range(config.n_blocks))
        self.final_norm = nn.LayerNorm(config.dim)
        if config.knowledge:
            self.adaptor = nn.Sequential(nn.Linear(config.text_dim, config.adaptor_hidden), nn.GELU(),
                                         nn.Dropout(config.dropout), nn.Linear(config.adaptor_hidden, config.dim))
        if config.item_text:
            # Filled by set_item_text; saved with the weights so a loaded model scores the same.
            self.register_buffer("item_text_vectors", torch.zeros(config.n_items + 1, config.item_text_dim))
            self.item_text_proj = nn.Linear(config.item_text_dim, config.dim, bias=False)
            self.text_query = nn.Linear(config.text_dim, config.match_dim, bias=False)
            self.item_key = nn.Linear(config.item_text_dim, config.match_dim, bias=False)
            nn.init.normal_(self.item_text_proj.weight, std=config.item_text_dim ** -0.5)
            with torch.no_grad():
                # The same random projection on both sides keeps dot products (in expectation): the match
                # starts as a scaled cosine of two texts embedded by one encoder.
                nn.init.normal_(self.item_key.weight, std=config.match_dim ** -0.5)
                self.text_query.weight.copy_(self.item_key.weight * config.dim ** 0.5)
        causal = torch.triu(torch.ones(config.max_len, config.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)
        nn.init.normal_(self.item_emb.weight, std=config.dim ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, tokens: torch.Tensor, text: torch.Tensor | None = None,
                has_text: torch.Tensor | None = None) -> torch.Tensor:
        length = tokens.shape[1]
        keep = (tokens > 0).unsqueeze(-1).to(self.item_emb.weight.dtype)
        positions = torch.arange(length, device=tokens.device)
        x = self.item_emb(tokens) * self.config.dim ** 0.5 + self.pos_emb(positions)
        x = self.emb_dropout(x) * keep
        mask = self.causal_mask[:length, :length]
        for block in self.blocks:
            # Padding positions are zeroed after each block (as in the reference implementation), so they
            # carry nothing; a causal mask alone never leaves a row without a key to attend to.
            x = block(x, src_mask=mask) * keep
        hidden = self.final_norm(x)
        if self.config.knowledge and text is not None:
            # The text describes the session as a whole, so it augments the session's representation: the
            # output at the last position, which predicts the item after the history.
            fused = self.adaptor(text)
            if has_text is not None:
                fused = fused * has_text.to(fused.dtype).view(-1, 1)
            hidden = torch.cat([hidden[:, :-1], (hidden[:, -1] + fused).unsqueeze(1)], dim=1)
        if self.config.item_text:
            # The text's query sits at the last position only, like the adaptor's output; zero elsewhere.
            query = torch.zeros(*hidden.shape[:2], self.config.match_dim, dtype=hidden.dtype, device=hidden.device)
            if self.config.knowledge and text is not None:
                last = self.text_query(text)
                if has_text is not None:
                    last = last * has_text.to(last.dtype).view(-1, 1)
                query[:, -1] = last
            hidden = torch.cat([hidden, query], dim=-1)
        return hidden

    def set_item_text(self, vectors: np.ndarray) -> None:
        """Store every item's text vector: float32 ``(n_items, item_text_dim)``, in catalog order."""
        vectors = np.asarray(vectors, dtype=np.float32)
        expected = (self.config.n_items, self.config.item_text_dim)
        if not self.config.item_text or vectors.shape != expected:
            raise ValueError(f"item text vectors of shape {vectors.shape} do not fit this model (expected {expected}; "
                             "item_text_dim must be > 0)")
        with torch.no_grad():
            self.item_text_vectors[1:] = torch.from_numpy(vectors)

    def item_vectors(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """float32 ``(n_items, width)`` for every catalog item in catalog order, or ``(*tokens.shape, width)``
        for the given tokens (catalog index + 1): the vectors hidden states are scored against."""
        if tokens is None:
            tokens = torch.arange(1, self.config.n_items + 1, device=self.item_emb.weight.device)
        vectors = self.item_emb(tokens)
        if self.config.item_text:
            text = self.item_text_vectors[tokens]
            vectors = torch.cat([vectors + self.item_text_proj(text), self.item_key(text)], dim=-1)
        return vectors


def left_padded(sequences: list[np.ndarray], max_len: int) -> np.ndarray:
    """int64 ``(len(sequences), max_len)`` tokens (catalog index + 1), the most recent ``max_len`` items, left-padded with 0."""
    out = np.zeros((len(sequences), max_len), dtype=np.int64)
    for row, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)[-max_len:]
        if seq.size:
            out[row, max_len - seq.size:] = seq + 1
    return out
