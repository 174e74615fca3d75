"""``rec-gym build-kb``: the frozen LLM writes a knowledge base from its mistakes on an env's training split.

Example::

    rec-gym build-kb --env Re2LLM-Synthetic-v0 --llm simulated --max-hints 20 --max-sessions 400 \\
        --dedup llm --support --out kb.json
    python -c "import gymnasium as gym, rec_gym; print(gym.make('Re2LLM-Synthetic-v0', kb='kb.json').action_space)"

Resumable: every LLM reply is kept in the response cache, so a run killed at any point and run again
calls the backend only for what the killed run had not finished.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--env", default="Re2LLM-Synthetic-v0", help="env id whose dataset is used (default: %(default)s)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="env arguments that choose the data, e.g. dataset=ml-latest-small "
                             "data_dir=../shared/data/ml-latest-small n_train=500")
    parser.add_argument("--llm", default=None, help="backend spec: simulated, hf:<model>, openai:<model> "
                        "(default: the env kwargs' llm, else simulated)")
    parser.add_argument("--backend-factory", metavar="MODULE:CALLABLE", help="build the backend by calling this; replaces --llm")
    parser.add_argument("--max-hints", type=int, default=20, metavar="K", help="hints in the KB (default: %(default)s)")
    parser.add_argument("--max-sessions", type=int, default=None, metavar="N",
                        help="most training sessions answered (default: all)")
    parser.add_argument("--dedup", choices=("llm", "embedding"), default="llm",
                        help="duplicate test: the LLM's yes/no answer, or embedding cosine similarity (default: %(default)s)")
    parser.add_argument("--similarity", type=float, default=0.85, help="cosine threshold of --dedup embedding (default: %(default)s)")
    parser.add_argument("--encoder", default="minilm", help="text encoder of --dedup embedding: minilm or hashing (default: %(default)s)")
    parser.add_argument("--support", action="store_true",
                        help="keep only hints whose mean NDCG@10 gain on other training sessions is not negative")
    parser.add_argument("--support-sessions", type=int, default=32, help="sample size of --support (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="order of the training sessions and the support sample (default: 0)")
    parser.add_argument("--response-cache", metavar="PATH",
                        help="SQLite file of LLM replies (default: $REC_GYM_CACHE/responses/responses.sqlite)")
    parser.add_argument("--out", required=True, help="the KB file to write (.json keeps the provenance)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rec_gym.envs.arguments import env_arguments, load_env_dataset, parse_env_kwargs
    from rec_gym.knowledge.build import build_knowledge_base
    from rec_gym.llm import make_llm
    from rec_gym.llm.factory import backend_from_factory

    arguments = env_arguments(args.env, parse_env_kwargs(args.env_kwargs))
    dataset = load_env_dataset(arguments)
    if args.backend_factory:
        backend = backend_from_factory(args.backend_factory)
    else:
        backend = make_llm(args.llm or arguments.get("llm", "simulated"), **(arguments.get("llm_kwargs") or {}))
    report = build_knowledge_base(dataset, backend, max_hints=args.max_hints, max_sessions=args.max_sessions,
                                  dedup=args.dedup, similarity=args.similarity, encoder=args.encoder,
                                  support=args.support, support_sessions=args.support_sessions, seed=args.seed,
                                  response_cache=args.response_cache, progress=not args.no_progress,
                                  name=Path(args.out).stem)
    report.kb.save(args.out)
    print(report.summary())
    print(f"wrote {args.out} ({len(report.kb)} hints, hash {report.kb.hash}); use it with kb={args.out!r}")
    return 0


COMMANDS = {
    "build-kb": (configure_parser, run,
                 "the LLM writes a hint knowledge base from its mistakes on the training split (resumable)"),
}
