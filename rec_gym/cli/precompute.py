"""``rec-gym precompute``: fill the feedback table of an env id and split (see :mod:`rec_gym.feedback.precompute`)."""

from __future__ import annotations

from rec_gym.feedback.precompute import configure_parser, run

COMMANDS = {
    "precompute": (configure_parser, run, "fill the feedback table of an env id and split (resumable, shardable)"),
}
