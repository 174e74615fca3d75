"""The hint knowledge base: validated, de-duplicated corrective hints, in a fixed order."""

from rec_gym.knowledge.base import KnowledgeBase, load_knowledge_base

__all__ = ["KnowledgeBase", "load_knowledge_base"]
