"""The ``rec-gym`` command: ``envs``, ``show``, ``precompute``, ``build-kb``, ``train``, ``evaluate``, ``benchmark``.

Each subcommand's options and work live beside the code they drive; this module routes and reports
errors. A user error (a bad value, a missing file) prints one line, ``rec-gym <command>: error:
<message>``, to stderr and exits with status 2, like an argparse error; ``--debug`` or
``REC_GYM_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Sequence

# subcommand -> (module, configure function, run function, one-line help)
SUBCOMMANDS = {
    "precompute": ("rec_gym.feedback.precompute", "configure_parser", "run",
                   "fill the feedback table of an env id and split (resumable, shardable)"),
    "build-kb": ("rec_gym.knowledge.cli", "configure_parser", "run",
                 "the LLM writes a hint knowledge base from its mistakes on the training split (resumable)"),
    "train": ("rec_gym.agents.cli", "configure_train", "run_train", "train an SB3 retrieval policy"),
    "evaluate": ("rec_gym.agents.cli", "configure_evaluate", "run_evaluate", "evaluate a saved policy on a split"),
    "benchmark": ("rec_gym.agents.cli", "configure_benchmark", "run_benchmark",
                  "train and compare algorithms over seeds; write tables and plots"),
    "train-recsys": ("rec_gym.recsys.cli", "configure_train_recsys", "run_train_recsys",
                     "train and evaluate SASRec (plain or knowledge-augmented) on a dataset"),
    "dpo-data": ("rec_gym.recsys.cli", "configure_dpo_data", "run_dpo_data",
                 "write DPO preference pairs (best vs worst preference text per session) from an RLRF4Rec env"),
    "dpo-train": ("rec_gym.recsys.cli", "configure_dpo_train", "run_dpo_train",
                  "tune an hf: model on DPO pairs with TRL's DPOTrainer (the [dpo] extra)"),
}


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["llm=simulated", "n_candidates=20"]`` -> ``{"llm": "simulated", "n_candidates": 20}`` (YAML scalars)."""
    import yaml

    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env-kwargs: expected key=value, got {pair!r}")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def _envs(args: argparse.Namespace) -> int:
    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS, RLRF4REC_ENV_IDS

    for env_id, kwargs in {**ENV_IDS, **COMPOSE_ENV_IDS, **RLRF4REC_ENV_IDS}.items():
        print(f"{env_id:29s} " + " ".join(f"{k}={v}" for k, v in kwargs.items()))
    print(f"{'hint_team_v0':29s} PettingZoo: from rec_gym.envs import hint_team_v0; hint_team_v0.parallel_env()")
    return 0


def _show(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import rec_gym  # noqa: F401  (registers the ids)

    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS

    if args.env not in ENV_IDS:
        compose = " (the composition ids take several hints; show one-hint ids)" if args.env in COMPOSE_ENV_IDS else ""
        raise UsageError(f"--env {args.env!r} is not a one-hint env id{compose}; `rec-gym envs` lists them")
    from rec_gym.agents.tasks import check_env_kwargs

    kwargs = parse_env_kwargs(args.env_kwargs)
    check_env_kwargs(args.env, kwargs)
    env = gym.make(args.env, render_mode="ansi", **kwargs)
    try:
        n_actions = int(env.action_space.n)
        if not 0 <= args.action < n_actions:
            raise UsageError(f"--action {args.action} is out of range: {args.env} has actions 0..{n_actions - 1} "
                             f"(0 = no hint, 1..{n_actions - 1} = the knowledge base's hints)")
        env.reset(seed=args.seed)
        env.step(args.action)
        print(env.render())
    finally:
        env.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rec_gym import __version__

    parser = argparse.ArgumentParser(prog="rec-gym", description="Gymnasium environments where a frozen LLM recommending "
                                     "from session data is the environment and choosing a hint is the action.")
    parser.add_argument("--version", action="version", version=f"rec-gym {__version__}", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: REC_GYM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("envs", help="list the registered env ids and their defaults")
    p.set_defaults(func=_envs)
    p = sub.add_parser("show", help="print one step of an env: the prompt, the hint and the LLM's ranking")
    p.add_argument("--env", default="Re2LLM-Synthetic-v0", help="one-hint env id (default: %(default)s)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="gym.make kwargs, e.g. split=val llm=simulated")
    p.add_argument("--seed", type=int, default=0, help="seed of the reset, which picks the session (default: 0)")
    p.add_argument("--action", type=int, default=1, help="0 = no hint, k = the knowledge base's k-th hint (default: 1)")
    p.set_defaults(func=_show)
    for name, (module, configure, run, help_text) in SUBCOMMANDS.items():
        # The one-line help is the description too, unless the subcommand's own parser sets a longer one.
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            p.set_defaults(func=lambda a, exc=exc, name=name: _unavailable(name, exc))
            continue
        getattr(mod, configure)(p)
        p.set_defaults(func=getattr(mod, run))
    return parser


class UsageError(ValueError):
    """A mistake in what the user asked for; reported as one line, exit status 2."""


def _unavailable(name: str, exc: ImportError) -> int:
    raise UsageError(f"rec-gym {name} is unavailable: {exc}")


# What a user's mistake raises: bad values and names, missing or unreadable files, an unknown env id.
def _user_errors() -> tuple[type[BaseException], ...]:
    import gymnasium

    return (ValueError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            gymnasium.error.Error)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("REC_GYM_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:
        if isinstance(exc.code, str) and not debug:
            return _report(args.command, exc.code)
        raise
    except _user_errors() as exc:
        if debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return _report(args.command, f"{message}" if str(message) else type(exc).__name__)
    except _environment_errors() as exc:
        if debug:
            raise
        return _report(args.command, str(exc) or type(exc).__name__, status=1)


# What the machine lacks: a model or dataset that cannot be had, a server that does not answer.
def _environment_errors() -> tuple[type[BaseException], ...]:
    from rec_gym.data.download import ChecksumMismatchError, DatasetNotFoundError
    from rec_gym.llm.protocol import BackendConfigError

    return (OSError, DatasetNotFoundError, ChecksumMismatchError, BackendConfigError)


def _report(command: str, message: str, status: int = 2) -> int:
    first, _, rest = str(message).strip().partition("\n")
    print(f"rec-gym {command}: error: {first}" + (" (--debug shows more)" if rest else ""), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
