"""The ``rec-gym`` command: ``envs``, ``show``, ``precompute``, ``train``, ``evaluate``, ``benchmark``.

Each subcommand's options and work live beside the code they drive; this module only routes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Sequence

# subcommand -> (module, configure function, run function, one-line help)
SUBCOMMANDS = {
    "precompute": ("rec_gym.feedback.precompute", "configure_parser", "run",
                   "fill the feedback table of an env id and split (resumable, shardable)"),
    "train": ("rec_gym.agents.cli", "configure_train", "run_train", "train an SB3 retrieval policy"),
    "evaluate": ("rec_gym.agents.cli", "configure_evaluate", "run_evaluate", "evaluate a saved policy on a split"),
    "benchmark": ("rec_gym.agents.cli", "configure_benchmark", "run_benchmark",
                  "train and compare algorithms over seeds; write tables and plots"),
}


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["llm=simulated", "n_candidates=20"]`` -> ``{"llm": "simulated", "n_candidates": 20}`` (YAML scalars)."""
    import yaml

    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env-kwargs: expected key=value, got {pair!r}")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def _envs(args: argparse.Namespace) -> int:
    from rec_gym.envs import ENV_IDS

    for env_id, kwargs in ENV_IDS.items():
        print(f"{env_id:22s} " + " ".join(f"{k}={v}" for k, v in kwargs.items()))
    return 0


def _show(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import rec_gym  # noqa: F401  (registers the ids)

    env = gym.make(args.env, render_mode="ansi", **parse_env_kwargs(args.env_kwargs))
    env.reset(seed=args.seed)
    env.step(args.action)
    print(env.render())
    env.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rec-gym", description="Gymnasium environments where a frozen LLM recommending "
                                     "from session data is the environment and choosing a hint is the action.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("envs", help="list the registered env ids and their defaults")
    p.set_defaults(func=_envs)
    p = sub.add_parser("show", help="print one step of an env: the prompt, the hint and the LLM's ranking")
    p.add_argument("--env", default="Re2LLM-Synthetic-v0")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--action", type=int, default=1)
    p.set_defaults(func=_show)
    for name, (module, configure, run, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            p.set_defaults(func=lambda a, exc=exc, name=name: sys.exit(f"rec-gym {name} is unavailable: {exc}"))
            continue
        getattr(mod, configure)(p)
        p.set_defaults(func=getattr(mod, run))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
