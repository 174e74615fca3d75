"""LLM backends behind one protocol, the prompt template, reply parsing and ``make_llm``."""

from __future__ import annotations

from typing import Any

from rec_gym.llm.prompts import TEMPLATE_VERSION, render_prompt
from rec_gym.llm.protocol import LLMBackend, RankRequest, target_rank

BACKEND_KINDS = ("simulated", "hf:<model id or path>", "openai:<model>", "embedding:<sentence-transformers model>")


def make_llm(spec: "str | LLMBackend", **kwargs: Any) -> LLMBackend:
    """Resolve an ``llm=`` value into a backend.

    ``spec`` is ``"simulated"``, ``"hf:<model id or local path>[@revision]"``, ``"openai:<model>"``,
    ``"embedding:<sentence-transformers model>"``, or an object that already implements
    :class:`~rec_gym.llm.protocol.LLMBackend` (returned unchanged). ``kwargs`` go to the backend.
    """
    if not isinstance(spec, str):
        if isinstance(spec, LLMBackend):
            return spec
        raise TypeError(
            f"llm={spec!r} is neither a spec string ({', '.join(BACKEND_KINDS)}) nor an object with "
            "a `name` attribute and a `rank(requests)` method"
        )
    kind, _, model = spec.partition(":")
    if kind == "simulated" and not model:
        from rec_gym.llm.simulated import SimulatedLLM

        return SimulatedLLM(**kwargs)
    if model:
        if kind == "hf":
            from rec_gym.llm.hf import HFBackend

            return HFBackend(model, **kwargs)
        if kind == "openai":
            from rec_gym.llm.openai_compat import OpenAIBackend

            return OpenAIBackend(model, **kwargs)
        if kind == "embedding":
            from rec_gym.llm.embedding import EmbeddingBackend

            return EmbeddingBackend(model, **kwargs)
    raise ValueError(f"unknown llm={spec!r}; expected one of: {', '.join(BACKEND_KINDS)}, or a backend object")


def __getattr__(name: str) -> Any:
    # parse_ranking lives in its own module; imported lazily so that `rec_gym.llm` stays light.
    if name in ("parse_ranking", "normalise_title"):
        from rec_gym.llm import parsing

        return getattr(parsing, name)
    raise AttributeError(name)


__all__ = ["LLMBackend", "RankRequest", "TEMPLATE_VERSION", "make_llm", "render_prompt", "target_rank", "parse_ranking"]
