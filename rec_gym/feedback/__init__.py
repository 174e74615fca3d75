"""Feedback tables: for every (session, hint) pair, the rank the LLM gave the target."""

from rec_gym.feedback.table import FeedbackTable, ProvenanceMismatch, NO_RANKING, UNKNOWN

__all__ = ["FeedbackTable", "ProvenanceMismatch", "NO_RANKING", "UNKNOWN"]
