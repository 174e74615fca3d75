"""``rec-gym train``, ``rec-gym evaluate`` and ``rec-gym benchmark``: SB3 retrieval policies and their comparison."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rec_gym.envs.arguments import parse_env_kwargs


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", required=True, choices=("ppo", "dqn", "a2c", "maskable_ppo"),
                        help="SB3 algorithm; maskable_ppo (sb3-contrib) for the Re2LLMCompose-* ids")
    parser.add_argument("--env", default="Re2LLM-Synthetic-v0",
                        help="env id (default: %(default)s), a Re2LLMCompose-* id, or hint_team_v0 (PPO shared by the team)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="gym.make kwargs, e.g. dataset=steam data_dir=../shared/data/steam-sessions")
    parser.add_argument("--timesteps", type=int, default=None, help="env steps (default: the hyperparameter file's n_timesteps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the algorithm, the envs and the network (default: 0)")
    parser.add_argument("--out", default=None, help="run folder (default: ./runs/<algo>-<env>-s<seed>)")
    parser.add_argument("--hyperparams", default=None, metavar="FILE",
                        help="zoo-format YAML keyed by env id (default: the shipped rec_gym/agents/hyperparams/<algo>.yml)")
    parser.add_argument("--val-every", type=int, default=5000,
                        help="val NDCG@10 every so many steps, besides the start and the end (0: only those)")
    parser.add_argument("--keep", choices=("final", "best_val"), default="final",
                        help="which policy the run saves: the final one, or the val-best point of its curve "
                             "(early stopping on val; default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide SB3's progress bar")


def run_train(args: argparse.Namespace) -> int:
    from rec_gym.agents.training import train

    out = Path(args.out or f"runs/{args.algo}-{args.env}-s{args.seed}")
    result = train(args.algo, args.env, parse_env_kwargs(args.env_kwargs), seed=args.seed, timesteps=args.timesteps,
                   out_dir=out, hyperparams_file=args.hyperparams, val_every=args.val_every or None,
                   progress_bar=not args.no_progress, keep=args.keep)
    print(f"saved {out / 'model.zip'} and {out / 'config.json'}; TensorBoard: tensorboard --logdir {out / 'tb'}")
    print(f"val NDCG@10: {result.curve.ndcg[0]:.4f} at start -> {result.curve.ndcg[-1]:.4f} after "
          f"{result.curve.steps[-1]} steps")
    val = result.config["val"]
    print(f"val NDCG@10 {val['val_ndcg10']:.4f} with {val['val_mean_hints']:.2f} hints per prompt "
          f"(no hint: {val['val_no_hint_ndcg10']:.4f}); distinct LLM calls this run needed: {val['llm_calls']:,}")
    print(f"evaluate on test: {evaluate_command(out, result.config)}")
    return 0


def evaluate_command(out: Path, config: dict[str, Any]) -> str:
    """The ``rec-gym evaluate`` line of a run, with the env arguments a run folder never supplies itself."""
    import shlex

    from rec_gym.agents.training import env_kwarg_argument, local_only_kwargs

    local = local_only_kwargs(config["env_kwargs"])
    command = f"rec-gym evaluate --model {shlex.quote(str(out))}"
    if local:
        command += " --env-kwargs " + " ".join(shlex.quote(env_kwarg_argument(key, value)) for key, value in local.items())
    return command


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model.zip saved by `rec-gym train` (or its folder)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to score (default: test)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="env arguments a run folder never chooses itself (llm, llm_kwargs, feedback_table, "
                             "data_dir, a dataset folder, a knowledge-base file); they override its config.json")
    parser.add_argument("--baselines", action="store_true",
                        help="also report no hint, random, best fixed hint and the oracle on the same split")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run_evaluate(args: argparse.Namespace) -> int:
    from rec_gym.agents.baselines import BestFixedHint, NoHint, Oracle, UniformRandomHint
    from rec_gym.agents.evaluation import evaluate
    from rec_gym.agents.hint_sets import is_hint_set_env, one_hint_counterpart
    from rec_gym.agents.tasks import make_env
    from rec_gym.agents.training import evaluate_run

    result, config = evaluate_run(args.model, args.split, env_kwargs=parse_env_kwargs(args.env_kwargs))
    env_id, kwargs = config["env_id"], config["env_kwargs"]
    report = {f"{config['algo'].upper()} (seed {config['seed']})": result.metrics}
    if args.baselines:
        # A hint-set run's baselines are one-hint policies on the same sessions and feedback table.
        base_id, base_kwargs = one_hint_counterpart(env_id, kwargs) if is_hint_set_env(env_id) else (env_id, kwargs)
        env = make_env(base_id, args.split, base_kwargs)
        for baseline in (NoHint(), UniformRandomHint(env.action_space, seed=0), BestFixedHint.fit(base_id, base_kwargs),
                         Oracle()):
            report[baseline.name] = evaluate(baseline, env, args.split).metrics
        env.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    metrics = list(next(iter(report.values())))
    print(f"{env_id} {kwargs or ''} split={args.split}")
    print(f"{'policy':24s} " + " ".join(f"{m:>13s}" for m in metrics))
    for name, values in report.items():
        print(f"{name:24s} " + " ".join(f"{values[m]:13.4f}" for m in metrics))
    return 0


def configure_benchmark(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="a shipped config name (quick, full: rec_gym/agents/configs/) or a YAML file")
    parser.add_argument("--out", default=None, help="output folder (default: the config's out, else ./results/<name>)")
    parser.add_argument("--workers", type=int, default=None, help="parallel runs (default: the config's)")


def run_benchmark(args: argparse.Namespace) -> int:
    from rec_gym.agents.benchmark import BenchmarkConfig, run

    config = BenchmarkConfig.load(args.config)
    if args.out:
        config.out = Path(args.out)
    if args.workers:
        config.workers = args.workers
    out = run(config)
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"wrote {out}/results.csv, results.md, curves.csv, learning_curves.png, comparison.png")
    return 0


COMMANDS = {
    "train": (configure_train, run_train, "train an SB3 retrieval policy"),
    "evaluate": (configure_evaluate, run_evaluate, "evaluate a saved policy on a split"),
    "benchmark": (configure_benchmark, run_benchmark, "train and compare algorithms over seeds; write tables and plots"),
}
