"""Preference texts: the LLM reads a session's history and writes the user's preferences (RLRF4Rec step 1).

The prompt is factor-based: the model first names the factors that matter for this domain (genres,
creators, era, themes, popularity), then writes the preference, in a fixed two-line structure::

    Factors: <comma-separated factors>
    Preference: <the user's preference>

:func:`~rec_gym.llm.preference_reply.parse_preference` checks that structure; a reply that breaks it is never a "chosen" reply in
DPO pairs (structure alignment). ``N`` texts per session are sampled at a temperature, each request
with its own ``sample`` index, through :class:`~rec_gym.llm.response_cache.CachedBackend`, so every
text is generated once and cached by model, template, conversation, temperature and sample.
Any writer backend works (``simulated``, ``hf:``, ``openai:``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from rec_gym.data.embeddings import TextEncoder, _encode_with_progress, make_encoder
from rec_gym.data.synthetic import latent_preference
from rec_gym.data.types import Item, SessionDataset
from rec_gym.llm.preference_reply import parse_preference, without_reasoning
from rec_gym.llm.protocol import GenerateRequest, can_write

TEMPLATE_VERSION = "rlrf4rec-preference-v1"
FACTS_TEMPLATE_VERSION = "rlrf4rec-preference-facts-v1"
TEMPLATE_VERSIONS = {"titles": TEMPLATE_VERSION, "facts": FACTS_TEMPLATE_VERSION, "profile": "rlrf4rec-preference-profile-v1"}
DEFAULT_N = 10
DEFAULT_TEMPERATURE = 1.0
MAX_NEW_TOKENS = 160
_SYSTEM = "You are an expert analyst of what people enjoy. Answer in exactly the format asked for."
_FACTORS = {"movie": "genres, directors, era, themes, popularity", "game": "genres, developers, era, themes, popularity"}


PROMPTS = ("titles", "facts", "profile")


def item_facts(item: Item) -> str:
    """An item as the ``"facts"`` prompt lists it: its title, then ``[genres; creator; tier]`` where known."""
    facts = [", ".join(item.genres)] if item.genres else []
    if item.creator:
        facts.append(str(item.creator))
    tier = item.attributes.get("tier")
    if isinstance(tier, str) and tier:
        facts.append(tier)
    return f"{item.title} [{'; '.join(facts)}]" if facts else item.title


def history_profile(history: Sequence[Item], domain: str) -> str:
    """What the ``"profile"`` prompt adds after the titles: the history's most frequent genres, creator and
    decade with their counts, and how many of its items are popular and how many obscure (where known)."""
    from collections import Counter

    n = len(history)
    parts = []
    genres = Counter(g for item in history for g in item.genres).most_common(3)
    if genres:
        parts.append("genres " + ", ".join(f"{g} ({c})" for g, c in genres))
    creators = Counter(item.creator for item in history if item.creator).most_common(1)
    if creators:
        maker = "developer" if domain == "game" else "director"
        parts.append(f"{maker} {creators[0][0]} ({creators[0][1]} of {n})")
    decades = Counter(item.year // 10 * 10 for item in history if item.year is not None).most_common(1)
    if decades:
        parts.append(f"the {decades[0][0]}s ({decades[0][1]} of {n})")
    tiers = Counter(item.attributes.get("tier") for item in history if isinstance(item.attributes.get("tier"), str))
    if tiers:
        parts.append(", ".join(f"{c} {t}" for t, c in sorted(tiers.items())))
    return "; ".join(parts)


def preference_prompt(history: Sequence[Item], domain: str, prompt: str = "titles") -> str:
    """The user message asking for one session's preference text.

    ``prompt="titles"`` lists the history's titles, as an LLM that knows the catalog reads them;
    ``"facts"`` adds what the dataset knows of each item (:func:`item_facts`); ``"profile"`` adds after the
    titles the history's most frequent facts with their counts (:func:`history_profile`). The last two give
    a model without world knowledge (the tiny writer of :mod:`rec_gym.recsys.writer`) the knowledge of the
    catalog an LLM brings.
    """
    if prompt not in PROMPTS:
        raise ValueError(f"prompt={prompt!r}: use one of {list(PROMPTS)}")
    verb, noun = ("purchased", "video games") if domain == "game" else ("watched", "movies")
    titles = "; ".join(item_facts(item) if prompt == "facts" else item.title for item in history)
    profile = history_profile(history, domain) if prompt == "profile" else ""
    if profile:
        titles += f". Most frequent among them: {profile}"
    return (f"A user {verb} the following {noun} in order: {titles}. First name the factors that matter most for "
            f"choosing {noun} for this user (for example {_FACTORS.get(domain, _FACTORS['movie'])}). Then describe "
            f"the user's preferences in one to three sentences. Answer in exactly this format:\n"
            f"Factors: <comma-separated factors>\nPreference: <the user's preferences>")


def preference_request(history: Sequence[Item], domain: str, sample: int = 0, temperature: float = DEFAULT_TEMPERATURE,
                       max_new_tokens: int = MAX_NEW_TOKENS, latent: str | None = None,
                       prompt: str = "titles") -> GenerateRequest:
    """The generation request for one sample of one session's preference text.

    ``latent``: the session's latent preference where the dataset knows it (:func:`session_latent`); only
    the simulated writer reads it (``context["latent"]``), never the prompt a model sees. ``prompt``: see
    :func:`preference_prompt`.
    """
    return GenerateRequest((("system", _SYSTEM), ("user", preference_prompt(history, domain, prompt))),
                           purpose="preference", template_version=TEMPLATE_VERSIONS[prompt], max_new_tokens=max_new_tokens, temperature=temperature,
                           sample=sample, context={"history": tuple(history), "domain": domain,
                                                   **({"latent": latent} if latent else {})})


def session_latent(dataset: SessionDataset, row: int) -> str | None:
    """The latent preference of session ``row`` in the synthetic world (its generator drew it), else ``None``."""
    if dataset.name != "synthetic":
        return None
    return latent_preference(str(dataset.session_ids[int(row)]))


def generate_preferences(writer: Any, dataset: SessionDataset, rows: Sequence[int], n: int = DEFAULT_N,
                         temperature: float = DEFAULT_TEMPERATURE, cache: "str | os.PathLike | None | bool" = None,
                         progress: bool = True, sessions_per_batch: int = 16, prompt: str = "titles") -> list[list[str]]:
    """``n`` sampled preference replies for each session of ``rows`` (dataset rows), in row order.

    Args:
        writer: a backend with ``write`` (``make_llm("simulated")``, ``hf:``, ``openai:``), or a
            :class:`~rec_gym.llm.response_cache.CachedBackend` around one.
        cache: the response-cache file (default: the shared one under ``$REC_GYM_CACHE``); ``False``
            calls the backend directly (nothing cached).
        prompt: ``"titles"`` or ``"facts"`` (:func:`preference_prompt`): what the writer reads of each item.

    Returns ``replies[k][s]``: sample ``s`` of session ``rows[k]``, the raw reply (see :func:`parse_preference`).
    """
    from rec_gym.llm.response_cache import CachedBackend

    if n < 1:
        raise ValueError(f"n (texts per session) must be >= 1, got {n}")
    if prompt not in PROMPTS:
        raise ValueError(f"prompt={prompt!r}: use one of {list(PROMPTS)}")
    if not can_write(writer):
        raise TypeError(f"backend {getattr(writer, 'name', writer)!r} does not write text; use simulated, hf:<model> or "
                        "openai:<model>")
    if cache is not False and not isinstance(writer, CachedBackend):
        writer = CachedBackend(writer, cache if cache not in (None, True) else None)
    replies: list[list[str]] = []
    rows = [int(r) for r in rows]
    with tqdm(total=len(rows) * n, desc=f"preference texts ({dataset.name})", unit="text", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, len(rows), sessions_per_batch):
            requests = []
            for row in rows[start:start + sessions_per_batch]:
                history = dataset.session_items(row)[0]
                latent = session_latent(dataset, row)
                requests += [preference_request(history, dataset.domain, s, temperature, latent=latent, prompt=prompt)
                             for s in range(n)]
            texts = writer.write(requests)
            replies += [texts[k:k + n] for k in range(0, len(texts), n)]
            bar.update(len(requests))
    return replies


def preference_text(reply: str) -> str:
    """What the recommender reads of a reply: factors and preference of a well-formed one, else the whole reply."""
    parsed = parse_preference(reply)
    if parsed is None:
        return without_reasoning(reply)
    return f"Factors: {', '.join(parsed.factors)}. Preference: {parsed.preference}"


@lru_cache(maxsize=4)
def _encoder(spec: str) -> TextEncoder:
    return make_encoder(spec)


def embed_texts(texts: Sequence[str], encoder: "str | TextEncoder", progress: bool = False) -> np.ndarray:
    """float32 ``(len(texts), dim)``: unit-norm embeddings of preference replies (:func:`preference_text` of each).

    ``progress`` shows a bar over the distinct texts (worth it for a model encoder on a CPU).
    """
    model = _encoder(encoder) if isinstance(encoder, str) else encoder
    if not texts:
        return np.zeros((0, model.dim), dtype=np.float32)
    # Sampled replies repeat (the same text for several samples or sessions): each distinct one is encoded once.
    distinct: dict[str, int] = {}
    index = [distinct.setdefault(preference_text(t), len(distinct)) for t in texts]
    if progress:
        vectors = _encode_with_progress(model, list(distinct), "embedding preference texts")
    else:
        vectors = np.asarray(model.encode(list(distinct)), dtype=np.float32)
    return vectors[np.array(index)]
