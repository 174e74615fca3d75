"""``rec-gym precompute``: fill the feedback table of an env id and split before training.

Every (session, hint) pair of the split, hint 0 ("no hint") included, is sent to the env's LLM
backend once; the table is saved where the environment looks for it (``$REC_GYM_CACHE/feedback``,
named by its provenance) or at ``--table``, so that an env made with the same arguments steps by
memory lookup. Examples::

    rec-gym precompute --env Re2LLM-ML1M-v0 --split train --env-kwargs llm=hf:Qwen/Qwen2.5-0.5B-Instruct
    rec-gym precompute --env Re2LLM-ML1M-v0 --env-kwargs llm=openai:gpt-4o-mini --shard 0/4   # machine 0 of 4
    rec-gym precompute --env Re2LLM-ML1M-v0 --env-kwargs llm=openai:gpt-4o-mini --merge       # after copying the shards

Resumable: every LLM answer goes to a response cache (SQLite, committed batch by batch) before it
goes to the table (except for a backend that declares itself ``cheap_and_deterministic``, such as
the simulated ranker, whose answers cost less to recompute than to store), and the table itself is saved every ``--save-every`` pairs; a run that is killed,
even with SIGKILL, and started again computes only what was not finished. Only answers are stored: a
request the backend never got an answer for (a server that stayed unreachable) stops the run with
exit status 1, keeping everything finished and storing nothing for it; a request the server refuses
(HTTP 4xx, a redirect: a configuration error) stops it at once with exit status 2. Either way the
backend's failure and retry counters are printed by cause; run the same command again to retry.

Hint sets: ``--max-hints M`` (default: the env's ``max_hints``; 1 for the one-hint ids) fills every set
of up to ``M`` hints of the knowledge base, the table the composition and team envs read; the run says
how many prompts that is first. ``--sets-per-session S`` samples ``S`` of the sets of two or more hints
per session instead (seeded, the same on every run), for when all of them are too many::

    rec-gym precompute --env Re2LLMCompose-Synthetic-v0 --max-hints 3 --sets-per-session 50

Sharding: ``--shard i/n`` fills the ``i``-th of ``n`` contiguous blocks of the split's sessions into
``<table>.shard-i-of-n.npz`` beside the table; ``--merge`` joins all ``n`` shard files into the table
(all shards must exist and carry the same provenance; give it the shards' ``--max-hints`` and
``--sets-per-session``, which say which pairs it checks are known). Shards on one machine may share
one response cache file.

Only the columns a run asks for are its business: the table file may hold other hint sets (added by
the composition and team envs, or by another precompute running at the same time), and the run
finds its own columns by key after taking those in, so they never change what it fills or reports.

On a Ray cluster: ``--ray`` fills the same table with ``--num-workers`` Ray workers, each holding one
backend (see :mod:`rec_gym.feedback.distributed`; needs ``pip install 'rec_gym[ray]'``)::

    rec-gym precompute --env Re2LLM-ML1M-v0 --env-kwargs llm=hf:Qwen/Qwen2.5-7B-Instruct \\
        --ray --address auto --num-workers 8 --worker-gpus 1
"""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np

from rec_gym.feedback.precompute import (check_set_options, fill, keeps_response_cache, merge, shard_path,
                                         shard_rows)
from rec_gym.feedback.table import FeedbackTable
from rec_gym.llm.response_cache import CachedBackend

# Env arguments that only shape stepping, not the table.
_STEPPING_ONLY = ("reward", "sessions_per_episode", "render_mode", "encoder", "reward_shaping", "n_agents",
                  "reward_mode")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--env", default="Re2LLM-Synthetic-v0", help="registered env id (see `rec-gym envs`)")
    parser.add_argument("--split", default=None, choices=("train", "val", "test"),
                        help="split whose sessions are filled (default: the env's, i.e. train)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="env arguments, e.g. llm=hf:<model> dataset=ml-1m n_train=500 (YAML scalars)")
    parser.add_argument("--backend-factory", metavar="MODULE:CALLABLE",
                        help="build the LLM backend by calling this (a custom backend); replaces llm=")
    parser.add_argument("--shard", metavar="I/N", help="fill only block I (0-based) of N blocks of sessions")
    parser.add_argument("--merge", action="store_true", help="join the shard files into the full table")
    parser.add_argument("--table", metavar="PATH", help="the table file (default: where the env looks for it)")
    parser.add_argument("--response-cache", metavar="PATH",
                        help="SQLite file of LLM answers (default: $REC_GYM_CACHE/responses/responses.sqlite; "
                        "none for a cheap, deterministic backend unless this is given)")
    parser.add_argument("--no-response-cache", action="store_true", help="keep no per-request cache (not resumable "
                        "within a checkpoint interval)")
    parser.add_argument("--max-hints", type=int, default=None, metavar="M",
                        help="fill every set of up to M hints (default: the env's max_hints, else 1)")
    parser.add_argument("--sets-per-session", type=int, default=None, metavar="S",
                        help="with --max-hints >= 2: fill S sampled sets of 2+ hints per session instead of all")
    parser.add_argument("--sessions-per-batch", type=int, default=8, help="sessions per backend call")
    parser.add_argument("--save-every", type=int, default=2048, metavar="PAIRS", help="table checkpoint interval")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    ray = parser.add_argument_group("Ray cluster (rec_gym.feedback.distributed)")
    ray.add_argument("--ray", action="store_true", help="fill on a Ray cluster, one backend per worker")
    ray.add_argument("--address", default=None, help="the cluster to join, e.g. 'auto' or HOST:6379 (default: the "
                     "cluster this machine runs, else a new local Ray)")
    ray.add_argument("--num-workers", type=int, default=None, metavar="W",
                     help="workers, each holding one backend (default: one per openai base URL, else 1)")
    ray.add_argument("--worker-cpus", type=float, default=1.0, metavar="C", help="CPUs Ray reserves per worker")
    ray.add_argument("--worker-gpus", type=float, default=0.0, metavar="G", help="GPUs Ray reserves per worker")
    ray.add_argument("--block-sessions", type=int, default=64, metavar="B",
                     help="sessions per block of work sent to a worker (a multiple of --sessions-per-batch keeps "
                     "the backend's batches those of a single-process fill)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``; ``0 <= i < n``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4")
    return int(match.group(1)), int(match.group(2))


def task_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The env id's registered kwargs, overridden by ``--env-kwargs`` and ``--split``."""
    from rec_gym.envs.arguments import env_arguments, parse_env_kwargs

    kwargs = env_arguments(args.env, parse_env_kwargs(args.env_kwargs))
    if args.split is not None:
        kwargs["split"] = args.split
    return kwargs


def _entry_point_default(env_id: str, name: str, fallback: Any) -> Any:
    """The default of argument ``name`` of the env class behind ``env_id`` (``fallback`` when it has none)."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    parameter = inspect.signature(load_env_creator(gym.spec(env_id).entry_point)).parameters.get(name)
    return fallback if parameter is None else parameter.default


def open_task(args: argparse.Namespace, backend: Any = None) -> tuple[Any, CachedBackend | None, Path]:
    """(task with its dataset, KB and backend, the caching wrapper or None, the full table's path).

    ``backend`` replaces the one ``llm=`` (or ``--backend-factory``) names, as it is: no response cache
    is put around it. Sets ``args.max_hints`` from the env's arguments when the command line left it out.
    """
    # The table must land where the env will look for it, so the env's own argument resolution
    # (dataset, split, KB, backend name -> provenance) is used rather than a copy of it.
    from rec_gym.envs.task import Re2LLMTask
    from rec_gym.llm.factory import backend_from_factory
    from rec_gym.llm.lazy import lazy_llm

    kwargs = task_arguments(args)
    llm_kwargs = kwargs.pop("llm_kwargs", None) or {}
    spec = kwargs.pop("llm", "simulated")
    cached = None
    if backend is None:
        if isinstance(llm_kwargs.get("base_url"), list):
            raise ValueError(f"llm_kwargs base_url={llm_kwargs['base_url']!r}: several servers are filled from with "
                             "--ray (one worker per URL); without it give one base_url")
        backend = backend_from_factory(args.backend_factory) if args.backend_factory else lazy_llm(spec, **llm_kwargs)
        if keeps_response_cache(backend, args.response_cache, args.no_response_cache):
            backend = cached = CachedBackend(backend, args.response_cache)
        elif not args.no_response_cache:
            print(f"no response cache: {backend.name} is deterministic and cheap, so the table is the record "
                  "(--response-cache PATH keeps one anyway)", flush=True)
    env_max_hints = kwargs.pop("max_hints", _entry_point_default(args.env, "max_hints", 1))
    args.max_hints = int(args.max_hints if args.max_hints is not None else env_max_hints)
    table_path = args.table or kwargs.pop("feedback_table", None)
    kwargs.pop("feedback_table", None)
    accepted = set(inspect.signature(Re2LLMTask).parameters) - {"persist", "llm", "feedback_table", "llm_kwargs"}
    unknown = sorted(set(kwargs) - accepted - set(_STEPPING_ONLY))
    if unknown:
        raise ValueError(f"--env-kwargs: unknown argument(s) {unknown} for {args.env}; accepted: {sorted(accepted)}")
    task_kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    # Observations are not needed here; the cheap encoder avoids loading a sentence model for nothing.
    task_kwargs["encoder"] = "hashing"
    task = Re2LLMTask(llm=backend, persist=False, **task_kwargs)
    path = Path(table_path) if table_path else FeedbackTable.default_path(task.table.provenance, task.rows)
    return task, cached, path


def run(args: argparse.Namespace) -> int:
    """Fill (or, with ``--merge``, join) the feedback table; 0 when the requested part is complete."""
    if args.merge and args.shard:
        raise ValueError("--merge joins all shards; give it without --shard")
    if args.sessions_per_batch < 1 or args.save_every < 0:
        raise ValueError("--sessions-per-batch must be >= 1 and --save-every >= 0")
    if args.ray:
        if args.merge or args.shard:
            raise ValueError("--ray fills the whole table from one driver; give it without --shard or --merge")
        from rec_gym.feedback.distributed import fill_on_ray  # ImportError naming the extra when Ray is absent

        return fill_on_ray(args, task_arguments(args), lambda backend: open_task(args, backend))
    shard = parse_shard(args.shard) if args.shard else None
    task, cached, path = open_task(args)
    try:
        if args.merge:
            return merge(task, path, args)
        check_set_options(args)
        if shard is None:
            table = task.table.opened_at(path)
            rows = np.arange(len(task.rows))
        else:
            table = task.table.opened_at(shard_path(path, *shard))
            rows = shard_rows(len(task.rows), *shard)
        return fill(task, table, rows, args, cached)
    finally:
        if cached is not None:
            cached.close()


COMMANDS = {
    "precompute": (configure_parser, run, "fill the feedback table of an env id and split (resumable, shardable)"),
}
