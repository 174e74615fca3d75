"""Train retrieval policies with RLlib's PPO (optional extra ``[rllib]``): the same envs, a distributed engine.

For sweeps that outgrow one machine. The one-hint ids (``Re2LLM-*-v0``), the composition ids
(``Re2LLMCompose-*-v0``) and the PettingZoo team (``hint_team_v0``, through RLlib's
``ParallelPettingZooEnv``; one policy shared by all retrievers, or one per retriever) all train under
RLlib's PPO with the same code on a laptop and on a Ray cluster::

    python -m rec_gym.agents.rllib --env Re2LLM-Synthetic-v0 --iterations 20
    python -m rec_gym.agents.rllib --env hint_team_v0 --policies per_agent --env-kwargs n_agents=3 reward_mode=difference
    ray start --head                      # on the head node; `ray start --address=<head>:6379` on the others
    python -m rec_gym.agents.rllib --address auto --env-runners 32 --env Re2LLMCompose-Steam-v0 ...

Each env runner builds its own env (and reads the shared feedback table; fill it first with
``rec-gym precompute`` so that no runner calls the LLM). Iterations print RLlib's mean episode return.

A config of one's own names an env by its plain id, as for any Gymnasium env: ``import rec_gym``
registers the ids with Ray Tune, whose registry RLlib's env runners read (:mod:`rec_gym.envs`)::

    PPOConfig().environment("Re2LLM-Synthetic-v0", env_config={"n_train": 500}).env_runners(num_env_runners=4)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

TEAM_ENV = "hint_team_v0"
POLICY_MODES = ("shared", "per_agent")


def team_env(env_kwargs: dict[str, Any] | None = None) -> Any:
    """The team (``hint_team_v0``) as an RLlib multi-agent env (RLlib's ``ParallelPettingZooEnv``)."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    from rec_gym.envs import hint_team_v0

    return ParallelPettingZooEnv(hint_team_v0.parallel_env(**dict(env_kwargs or {})))


def ppo_config(env_id: str, env_kwargs: dict[str, Any] | None = None, *, policies: str = "shared",
               n_agents: int | None = None, env_runners: int = 0, train_batch_size: int = 512,
               minibatch_size: int = 128, num_epochs: int = 4, lr: float = 3e-4, seed: int = 0) -> Any:
    """An RLlib ``PPOConfig`` for ``env_id`` (the id itself, with ``env_kwargs`` as RLlib's env config; the team is
    registered with Ray Tune as ``rec_gym/hint_team_v0``).

    ``policies`` applies to the team: ``"shared"`` (parameter sharing, one module) or ``"per_agent"``.
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    if policies not in POLICY_MODES:
        raise ValueError(f"policies={policies!r} is not one of {POLICY_MODES}")
    kwargs = dict(env_kwargs or {})
    if env_id == TEAM_ENV:
        name, env_config = f"rec_gym/{env_id}", {}
        register_env(name, lambda _config: team_env(kwargs))
    else:  # the ids are registered with Ray Tune by `import rec_gym` (rec_gym.envs.register_rllib_envs)
        name, env_config = env_id, kwargs
    config = (PPOConfig()
              .environment(name, env_config=env_config)
              .env_runners(num_env_runners=int(env_runners))
              .training(train_batch_size_per_learner=int(train_batch_size), minibatch_size=int(minibatch_size),
                        num_epochs=int(num_epochs), lr=float(lr))
              .debugging(seed=int(seed)))
    if env_id == TEAM_ENV:
        agents = [f"retriever_{k}" for k in range(int(n_agents or kwargs.get("n_agents", 3)))]
        if policies == "shared":
            config = config.multi_agent(policies={"shared"}, policy_mapping_fn=lambda agent_id, *a, **k: "shared")
        else:
            config = config.multi_agent(policies=set(agents), policy_mapping_fn=lambda agent_id, *a, **k: agent_id)
    return config


def train(env_id: str, env_kwargs: dict[str, Any] | None = None, iterations: int = 10, *, address: str | None = None,
          progress: bool = True, **config_kwargs: Any) -> list[dict[str, Any]]:
    """Run ``iterations`` PPO iterations; returns RLlib's result dict of each.

    ``address`` joins a running Ray cluster (``"auto"``); by default a local one is started (and stopped).
    """
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        algo = ppo_config(env_id, env_kwargs, **config_kwargs).build_algo()
        results = []
        for i in range(int(iterations)):
            result = algo.train()
            results.append(result)
            if progress:
                ret = result.get("env_runners", {}).get("episode_return_mean")
                print(f"iteration {i + 1}/{iterations}: mean episode return {ret if ret is None else f'{ret:.4f}'}",
                      flush=True)
        algo.stop()
        return results
    finally:
        if started:
            ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    from rec_gym.envs.arguments import parse_env_kwargs

    parser = argparse.ArgumentParser(prog="python -m rec_gym.agents.rllib", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Re2LLM-Synthetic-v0", help="an env id, or hint_team_v0")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="env arguments (YAML scalars)")
    parser.add_argument("--iterations", type=int, default=10, help="PPO training iterations")
    parser.add_argument("--policies", default="shared", choices=POLICY_MODES, help="the team's policies")
    parser.add_argument("--env-runners", type=int, default=0, help="RLlib env runners (0: sample in the driver)")
    parser.add_argument("--address", default=None, help="a Ray cluster to join ('auto'); default: a local one")
    parser.add_argument("--seed", type=int, default=0, help="RLlib's seed")
    args = parser.parse_args(argv)
    train(args.env, parse_env_kwargs(args.env_kwargs), args.iterations, address=args.address, policies=args.policies,
          env_runners=args.env_runners, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
