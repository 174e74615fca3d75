"""``rec-gym envs`` (the registered ids) and ``rec-gym show`` (one step of an env, printed)."""

from __future__ import annotations

import argparse


def configure_envs(parser: argparse.ArgumentParser) -> None:
    """``rec-gym envs`` takes no options."""


def run_envs(args: argparse.Namespace) -> int:
    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS, RLRF4REC_ENV_IDS

    for env_id, kwargs in {**ENV_IDS, **COMPOSE_ENV_IDS, **RLRF4REC_ENV_IDS}.items():
        print(f"{env_id:29s} " + " ".join(f"{k}={v}" for k, v in kwargs.items()))
    print(f"{'hint_team_v0':29s} PettingZoo: from rec_gym.envs import hint_team_v0; hint_team_v0.parallel_env()")
    return 0


def configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="Re2LLM-Synthetic-v0", help="one-hint env id (default: %(default)s)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="gym.make kwargs, e.g. split=val llm=simulated")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reset, which picks the session (default: 0)")
    parser.add_argument("--action", type=int, default=1,
                        help="0 = no hint, k = the knowledge base's k-th hint (default: 1)")


def run_show(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS
    from rec_gym.envs.arguments import check_env_id, check_env_kwargs, parse_env_kwargs

    check_env_id(args.env)
    if args.env not in ENV_IDS:
        compose = " (the composition ids take several hints; show one-hint ids)" if args.env in COMPOSE_ENV_IDS else ""
        raise ValueError(f"--env {args.env!r} is not a one-hint env id{compose}; `rec-gym envs` lists them")
    kwargs = parse_env_kwargs(args.env_kwargs)
    check_env_kwargs(args.env, kwargs)
    env = gym.make(args.env, render_mode="ansi", **kwargs)
    try:
        n_actions = int(env.action_space.n)
        if not 0 <= args.action < n_actions:
            raise ValueError(f"--action {args.action} is out of range: {args.env} has actions 0..{n_actions - 1} "
                             f"(0 = no hint, 1..{n_actions - 1} = the knowledge base's hints)")
        env.reset(seed=args.seed)
        env.step(args.action)
        print(env.render())
    finally:
        env.close()
    return 0


COMMANDS = {
    "envs": (configure_envs, run_envs, "list the registered env ids and their defaults"),
    "show": (configure_show, run_show, "print one step of an env: the prompt, the hint and the LLM's ranking"),
}
