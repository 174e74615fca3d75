"""``rec-gym precompute --ray``: fill a feedback table with a pool of Ray workers, one backend each.

The driver (the process running the command) opens the table as a single-process fill does, and
sends out only the (session, prompt variant) pairs the table does not know yet, in blocks of
``--block-sessions`` sessions. Each worker is a Ray actor holding one backend built from ``llm=``
and ``llm_kwargs`` (or ``--backend-factory``): an ``hf:`` model on the GPU Ray gave it
(``--worker-gpus``), an embedding model, or an ``openai:`` client. A worker fills its block with
:meth:`~rec_gym.feedback.table.FeedbackTable.fill` on an in-memory table, exactly as one process
would, and sends back the rank codes; only the driver writes the table file, under its lock
(:meth:`~rec_gym.feedback.table.FeedbackTable.save`), every ``--save-every`` answered pairs and at the
end. A progress bar counts answered pairs. Examples::

    ray start --head                                   # on the head node, then `ray start --address ...` on the others
    rec-gym precompute --env Re2LLM-ML1M-v0 --env-kwargs llm=hf:Qwen/Qwen2.5-7B-Instruct \\
        --ray --address auto --num-workers 8 --worker-gpus 1
    rec-gym precompute --env Re2LLM-ML1M-v0 --env-kwargs llm=openai:Qwen/Qwen2.5-7B-Instruct \\
        'llm_kwargs={base_url: [http://node1:8000/v1, http://node2:8000/v1]}' --ray --address auto

Settled and unsettled answers keep their meaning: a block whose server gave no answer for some pairs
(:class:`~rec_gym.llm.protocol.BackendUnavailable`) comes back with those pairs unknown, and nothing
is stored for them; a block a server refused (:class:`~rec_gym.llm.protocol.BackendConfigError`)
stops the run with exit status 2.

Several servers: ``openai:`` takes a list of base URLs, one per replica of the same model (vLLM
servers started with the same model and arguments). Worker ``k`` talks to URL ``k mod n`` (so
``--num-workers`` defaults to ``n``). A worker whose server left pairs without an answer is given no
more blocks in this run, and its unanswered pairs go to a worker on another URL; the run ends with
status 1 only when every URL failed them. The table is named (its provenance) after the first URL's
backend, so an env reads it with ``llm_kwargs={base_url: <first URL>}``; the response cache of each
worker keys answers by its own URL.

Faults: a worker process that dies (killed, out of memory) is started again by Ray (up to
:data:`MAX_RESTARTS` times) and its block is sent again (up to :data:`MAX_TASK_RETRIES` times). A
worker that cannot be brought back is given no more blocks, and its block goes to another. A backend
that raises an error the protocol does not name stops the run with status 1, keeping every answer. Every
worker keeps the response cache a single-process fill keeps, in its own machine's cache folder (or
``--response-cache``, which must then be a path every node can write), so a rerun of a killed run
computes only what no worker finished. Ray is imported only here, never by ``import rec_gym``;
install it with ``pip install 'rec_gym[ray]'``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from rec_gym.extras import MissingExtra

try:
    import ray
    import ray.exceptions
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingExtra("rec-gym precompute --ray", "ray", exc) from None

from rec_gym.data.types import SessionDataset
from rec_gym.feedback.precompute import (announce, check_set_options, finish, keeps_response_cache, session_groups,
                                         wanted_pairs)
from rec_gym.feedback.table import UNKNOWN, FeedbackTable, HintSet
from rec_gym.llm.protocol import BackendConfigError, BackendUnavailable, RankRequest, Ranking

MAX_RESTARTS = 3  # times Ray starts a dead worker again before the driver gives up on it
MAX_TASK_RETRIES = 3  # times Ray sends a dead worker's block again
COUNTERS = ("failures", "retries")


def base_urls(llm_kwargs: dict[str, Any]) -> list[str | None]:
    """The servers ``llm_kwargs["base_url"]`` names: a list of URLs, one URL, or ``[None]`` when absent."""
    urls = llm_kwargs.get("base_url")
    if isinstance(urls, (list, tuple)):
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise ValueError(f"llm_kwargs base_url={urls!r}: expected a list of URLs such as "
                             "[http://node1:8000/v1, http://node2:8000/v1]")
        return list(urls)
    return [urls]


@dataclass(frozen=True)
class FillJob:
    """What every block of one run shares, put in Ray's object store once.

    Attributes:
        dataset: the sessions (a worker builds each prompt from them, as a single-process fill does).
        dataset_rows: int64 ``(n,)``: the dataset row of each table row.
        provenance: the table's provenance (the workers' in-memory tables carry it).
        columns: the hint set of each of the run's columns; a block names its columns by index here.
        max_rank: the table's largest valid rank.
        sessions_per_batch: sessions per backend call.
    """

    dataset: SessionDataset
    dataset_rows: np.ndarray
    provenance: dict[str, Any]
    columns: list[HintSet]
    max_rank: int
    sessions_per_batch: int


@dataclass
class Block:
    """Pairs sent to one worker: ``rows`` (int64 ``(r,)``, table rows) x ``columns`` (int64 ``(c,)``, indices
    into :attr:`FillJob.columns`), with ``codes`` (int16 ``(r, c)``) what the driver knows of them (only
    ``UNKNOWN`` entries are computed), and the URLs (backend names) that left some of them unanswered."""

    rows: np.ndarray
    columns: np.ndarray
    codes: np.ndarray
    failed_on: set[str] = field(default_factory=set)

    @property
    def missing(self) -> int:
        return int(np.count_nonzero(self.codes == UNKNOWN))


@dataclass
class BlockResult:
    """A worker's answer for one :class:`Block`.

    Attributes:
        codes: int16 ``(r, c)``: the block's codes with every answered pair filled; pairs that got no
            answer stay ``UNKNOWN``.
        unanswered: the :class:`BackendUnavailable` message when some pairs got no answer, else ``""``.
        refused: the :class:`BackendConfigError` message when the server refused a request, else ``""``.
        counters: ``{"failures": {cause: n}, "retries": {...}}`` added by this block.
        computed, cached: requests the backend computed / the worker's response cache answered.
    """

    codes: np.ndarray
    unanswered: str = ""
    refused: str = ""
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0


class FillWorker:
    """One backend in one Ray worker process (an actor); built again by Ray if the process dies.

    Args:
        spec: the ``llm=`` string; ignored when ``factory`` is given.
        llm_kwargs: the backend's arguments (one ``base_url``, not a list).
        factory: ``MODULE:CALLABLE`` building a custom backend, or ``None``.
        response_cache, no_response_cache: ``--response-cache`` and ``--no-response-cache``.
    """

    def __init__(self, spec: str, llm_kwargs: dict[str, Any], factory: str | None, response_cache: str | None,
                 no_response_cache: bool) -> None:
        from rec_gym.llm import make_llm
        from rec_gym.llm.factory import backend_from_factory
        from rec_gym.llm.response_cache import CachedBackend

        self.engine = backend_from_factory(factory) if factory else make_llm(spec, **llm_kwargs)
        self.cache = (CachedBackend(self.engine, response_cache)
                      if keeps_response_cache(self.engine, response_cache, no_response_cache) else None)
        self.backend = self.cache if self.cache is not None else self.engine
        self._job: tuple[str, FillJob] | None = None

    @ray.method(concurrency_group="info")
    def process_id(self) -> int:
        """This worker's process id (answers while a block is being filled)."""
        return os.getpid()

    def backend_name(self) -> str:
        """The backend's name (for ``openai:``, it holds the server's URL)."""
        return self.engine.name

    def _counters(self) -> dict[str, collections.Counter[str]]:
        return {label: collections.Counter(getattr(self.engine, label, None) or {}) for label in COUNTERS}

    def fill(self, job: list[Any], block: Block) -> BlockResult:
        """Fill ``block``'s unknown pairs; ``job`` is ``[ObjectRef of the run's FillJob]`` (fetched once)."""
        ref = job[0]
        if self._job is None or self._job[0] != ref.hex():
            self._job = (ref.hex(), ray.get(ref))
        run = self._job[1]
        table = FeedbackTable(run.provenance, run.dataset_rows[block.rows],
                              [run.columns[int(c)] for c in block.columns], ranks=block.codes, max_rank=run.max_rank)
        before, calls = self._counters(), self._calls()
        result = BlockResult(codes=table.ranks)
        try:
            table.fill(run.dataset, self.backend, sessions_per_batch=run.sessions_per_batch)
        except BackendUnavailable as exc:
            result.unanswered = str(exc)
        except BackendConfigError as exc:
            result.refused = str(exc)
        after, done = self._counters(), self._calls()
        result.counters = {label: dict(after[label] - before[label]) for label in COUNTERS}
        result.computed, result.cached = done[0] - calls[0], done[1] - calls[1]
        return result

    def _calls(self) -> tuple[int, int]:
        return (self.cache.misses, self.cache.hits) if self.cache is not None else (0, 0)


class _PoolBackend:
    """The driver's stand-in for the workers' backend: its name keys the table; it never ranks."""

    def __init__(self, name: str) -> None:
        self.name = name

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        raise RuntimeError("the driver of a --ray fill computes nothing; its workers do")


def _connect(address: str | None) -> None:
    if not ray.is_initialized():
        ray.init(address=address, namespace="rec_gym", log_to_driver=True)


def _start_workers(args: argparse.Namespace, spec: str, llm_kwargs: dict[str, Any], urls: list[str | None]
                   ) -> list[Any]:
    n = args.num_workers if args.num_workers is not None else len(urls)
    if n < len(urls):
        raise ValueError(f"--num-workers {n} is fewer than the {len(urls)} base URLs; give each URL a worker "
                         f"(--num-workers {len(urls)} or more)")
    if n < 1 or args.worker_cpus < 0 or args.worker_gpus < 0 or args.block_sessions < 1:
        raise ValueError(f"--num-workers must be >= 1, --worker-cpus and --worker-gpus >= 0 and --block-sessions "
                         f">= 1; got {n}, {args.worker_cpus}, {args.worker_gpus} and {args.block_sessions}")
    actor = ray.remote(concurrency_groups={"info": 1})(FillWorker)
    run = uuid.uuid4().hex[:8]
    workers = []
    for k in range(n):
        kwargs = dict(llm_kwargs)
        if urls[k % len(urls)] is not None:
            kwargs["base_url"] = urls[k % len(urls)]
        workers.append(actor.options(name=f"rec-gym-fill-{run}-{k}", num_cpus=args.worker_cpus,
                                     num_gpus=args.worker_gpus, max_restarts=MAX_RESTARTS,
                                     max_task_retries=MAX_TASK_RETRIES)
                       .remote(spec, kwargs, args.backend_factory, args.response_cache, args.no_response_cache))
    return workers


def _blocks(rows: np.ndarray, wanted: np.ndarray, table: FeedbackTable, columns: np.ndarray, block_sessions: int
            ) -> list[Block]:
    """Blocks of at most ``block_sessions`` sessions that want the same columns and miss some of them."""
    blocks = []
    for members in session_groups(wanted):
        cols = np.flatnonzero(wanted[members[0]])
        codes = table.ranks[np.ix_(rows[members], columns[cols])]
        todo = np.flatnonzero((codes == UNKNOWN).any(axis=1))
        for start in range(0, todo.size, block_sessions):
            part = todo[start:start + block_sessions]
            blocks.append(Block(rows[np.asarray(members)[part]], cols, codes[part]))
    return blocks


def _take(table: FeedbackTable, block: Block, result: BlockResult, columns: np.ndarray) -> int:
    """Copy ``result``'s answers into ``table`` where it knows nothing yet; returns how many answers came."""
    answered = (block.codes == UNKNOWN) & (result.codes != UNKNOWN)
    where = np.ix_(block.rows, columns[block.columns])
    current = table.ranks[where]
    new = answered & (current == UNKNOWN)
    current[new] = result.codes[new]
    table.ranks[where] = current
    return int(answered.sum())


def fill_on_ray(args: argparse.Namespace, kwargs: dict[str, Any], open_task: Callable[[Any], tuple[Any, Any, Path]]
                ) -> int:
    """``rec-gym precompute --ray``: 0 when every pair the run asks for is known (see the module docstring).

    ``kwargs`` are the env's arguments; ``open_task(backend)`` returns the env's task around ``backend``,
    with the table's path (:func:`rec_gym.cli.precompute.open_task`).
    """
    workers: list[Any] = []
    try:
        spec = kwargs.get("llm", "simulated")
        llm_kwargs = dict(kwargs.get("llm_kwargs") or {})
        urls = base_urls(llm_kwargs)
        if kwargs.get("reward_source", "llm") != "llm":
            raise ValueError("--ray fills tables of the LLM's answers; reward_source=recsys tables are filled "
                             "without --ray")
        _connect(args.address)
        workers = _start_workers(args, spec, llm_kwargs, urls)
        names = ray.get([w.backend_name.remote() for w in workers])
        if len(urls) == 1 and len(set(names)) > 1:
            raise ValueError(f"the workers built backends of different names {sorted(set(names))} (different "
                             "hardware?); give every worker the same resources")
        task, _, path = open_task(_PoolBackend(names[0]))
        check_set_options(args)
        table = task.table.opened_at(path)
        rows = np.arange(len(task.rows))
        columns, wanted = wanted_pairs(task, table, rows, args)
        announce(task, table, rows, columns, wanted, args)
        print(f"Ray: {len(workers)} worker(s) of {names[0]}" + (f" over {len(urls)} servers" if len(urls) > 1 else "")
              + f", each with {args.worker_cpus:g} CPU(s) and {args.worker_gpus:g} GPU(s)", flush=True)
        job = FillJob(task.dataset, task.rows, table.provenance, [table.columns[int(c)] for c in columns],
                      table.max_rank, args.sessions_per_batch)
        job_ref = ray.put(job)
        blocks = _blocks(rows, wanted, table, columns, args.block_sessions)
        return _dispatch(args, table, rows, columns, wanted, blocks, workers, names, job_ref)
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
        cause = str(exc).strip().splitlines()[-1]  # Ray's message ends with the worker's exception
        print(f"rec-gym precompute: error: a worker could not build its backend: {cause}", file=sys.stderr)
        return 1
    finally:
        for worker in workers:
            ray.kill(worker)


def _dispatch(args: argparse.Namespace, table: FeedbackTable, rows: np.ndarray, columns: np.ndarray,
              wanted: np.ndarray, blocks: list[Block], workers: list[Any], endpoints: list[str], job_ref: Any
              ) -> int:
    """Send ``blocks`` to the workers until every pair is answered or no worker may take what is left.

    ``endpoints[k]`` is worker ``k``'s backend name, which says which server it talks to: a block is
    never sent again to a server that left some of its pairs unanswered.
    """
    queue = collections.deque(blocks)
    idle = list(range(len(workers)))
    in_flight: dict[Any, tuple[int, Block]] = {}
    counters: dict[str, collections.Counter[str]] = {label: collections.Counter() for label in COUNTERS}
    computed = cached = filled = unsaved = 0
    status, unanswered = 0, ""
    started = time.perf_counter()
    bar = tqdm(total=sum(b.missing for b in blocks), desc="feedback (session, prompt) pairs", unit="pair",
               disable=args.no_progress, dynamic_ncols=True)
    try:
        while True:
            for k in list(idle):
                block = next((b for b in queue if endpoints[k] not in b.failed_on), None)
                if block is not None:
                    queue.remove(block)
                    idle.remove(k)
                    in_flight[workers[k].fill.remote([job_ref], block)] = (k, block)
            if not in_flight:
                break
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            k, block = in_flight.pop(ref)
            try:
                result: BlockResult = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                # Ray gave up on this worker: its block goes to the others.
                print(f"worker {k} is gone ({type(exc).__name__}); its block goes to the other workers",
                      file=sys.stderr, flush=True)
                queue.appendleft(block)
                continue
            except ray.exceptions.RayTaskError as exc:
                # The backend raised something the protocol does not name: stop, keeping every answer.
                print(f"stopped: worker {k} failed: {str(exc).strip().splitlines()[-1]}", file=sys.stderr, flush=True)
                queue.appendleft(block)
                status = 1
                break
            answered = _take(table, block, result, columns)
            filled += answered
            unsaved += answered
            bar.update(answered)
            computed, cached = computed + result.computed, cached + result.cached
            for label in COUNTERS:
                counters[label].update(result.counters.get(label, {}))
            if result.refused:
                print(f"stopped: {result.refused}.", file=sys.stderr)
                status = 2
                break
            left = (result.codes == UNKNOWN).any(axis=1)
            if left.any():
                # This worker's server left pairs without an answer: it gets no more blocks in this run,
                # and the pairs go to a worker on another server.
                unanswered = result.unanswered
                queue.append(Block(block.rows[left], block.columns, result.codes[left],
                                   block.failed_on | {endpoints[k]}))
            else:
                idle.append(k)
            if args.save_every and unsaved >= args.save_every:
                table.save()
                unsaved = 0
    except KeyboardInterrupt:
        print("interrupted; what is finished is kept. Run the same command again to continue.", file=sys.stderr)
        status = 130
    finally:
        bar.close()
    left = sum(b.missing for b in queue) + sum(b.missing for _, b in in_flight.values())
    if left and not status:
        print(f"stopped: {left} request(s) never got an answer from any worker or server and nothing was stored for "
              f"them ({unanswered or 'their workers are gone'}). Run the same command again to continue.",
              file=sys.stderr)
        status = 1
    calls = f"; backend computed {computed}, response cache answered {cached}" if computed or cached else ""
    return finish(table, rows, columns, wanted, status, filled, time.perf_counter() - started, calls,
                  {label: dict(c) for label, c in counters.items()})
