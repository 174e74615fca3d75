"""The hint knowledge base: validated, de-duplicated corrective hints, in a fixed order.

:class:`KnowledgeBase` and :func:`load_knowledge_base` (``kb=`` of every env) live in
:mod:`rec_gym.knowledge.base`; :func:`build_knowledge_base` (Re2LLM's reflective exploration, ``rec-gym
build-kb``) in :mod:`rec_gym.knowledge.build`, with the reflection conversation in
:mod:`rec_gym.knowledge.reflection` and hint extraction in :mod:`rec_gym.knowledge.extraction`.
"""

from typing import Any

from rec_gym.knowledge.base import KnowledgeBase, load_knowledge_base

__all__ = ["KnowledgeBase", "load_knowledge_base", "build_knowledge_base"]


def __getattr__(name: str) -> Any:
    # The build loop pulls in the LLM layer; imported on first use so that loading a KB stays light.
    if name == "build_knowledge_base":
        from rec_gym.knowledge.build import build_knowledge_base

        return build_knowledge_base
    raise AttributeError(name)
