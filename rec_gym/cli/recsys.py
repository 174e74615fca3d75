"""`rec-gym train-recsys`, `dpo-data`, `dpo-train` and `rlrf4rec-loop`: the RLRF4Rec commands."""

from __future__ import annotations

import argparse
import json

import numpy as np

from rec_gym.data.embeddings import check_encoder
from rec_gym.recsys.preferences import PROMPTS
from rec_gym.recsys.sequences import TRAIN_HISTORY


def configure_train_recsys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset name or session folder (as gym.make's dataset=)")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    parser.add_argument("--out", required=True, help="output folder: model.safetensors + config.json")
    parser.add_argument("--epochs", type=int, default=80, help="passes over the training sequences (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="sequences per batch (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=64, help="embedding size (default: %(default)s)")
    parser.add_argument("--blocks", type=int, default=2, help="self-attention blocks (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training seed; the dataset's seed is 0 (default: %(default)s)")
    parser.add_argument("--train-history", type=int, default=TRAIN_HISTORY,
                        help="history items per session that training reads; the envs keep the last 20, and "
                             "longer day-sessions teach the model more (default: %(default)s)")
    parser.add_argument("--loss", choices=("sampled-softmax", "bce"), default="sampled-softmax",
                        help="next-item loss: softmax against sampled items, or SASRec's original binary "
                             "cross-entropy (default: %(default)s)")
    parser.add_argument("--negatives", type=int, default=256,
                        help="items sampled per batch for the sampled softmax (larger than the catalog: its size); "
                             "not read with --loss bce (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--validate-every", type=int, default=5,
                        help="keep the weights of the best validation NDCG@10, measured every so many epochs "
                             "(0: keep the last; default: %(default)s)")
    parser.add_argument("--knowledge", action="store_true",
                        help="train the knowledge-augmented variant on preference texts of the training sessions")
    parser.add_argument("--writer", default="simulated", help="backend writing the preference texts (default: %(default)s)")
    parser.add_argument("--n-texts", type=int, default=10, help="preference texts per training session (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the texts (default: %(default)s)")
    parser.add_argument("--prompt", choices=PROMPTS, default="titles",
                        help="what the writer reads of the history: its titles; each title with its genres, creator "
                             "and tier (facts); or the titles and the most frequent facts with counts (profile) "
                             "(default: %(default)s)")
    parser.add_argument("--encoder", default="minilm", help="frozen text encoder: minilm, hashing or st:<model> (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run_train_recsys(args: argparse.Namespace) -> int:
    from rec_gym.data import load_dataset
    from rec_gym.llm import make_llm
    from rec_gym.recsys.model import PopularityRecommender
    from rec_gym.recsys.preferences import embed_texts, generate_preferences
    from rec_gym.recsys.sasrec import SASRecConfig
    from rec_gym.recsys.sequences import longer_sessions
    from rec_gym.recsys.training import evaluate_recommender, train_sasrec

    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.train_history < 1:
        raise ValueError(f"--train-history must be >= 1, got {args.train_history}")
    dataset = load_dataset(args.dataset, args.data_dir)
    # The same sessions with longer histories, for training only; the envs and the evaluation keep 20.
    sessions = longer_sessions(dataset, args.dataset, args.data_dir, max_history=args.train_history)
    progress = not args.no_progress
    texts = None
    held_out: dict[str, np.ndarray] = {}
    if args.knowledge:
        check_encoder(args.encoder)
        writer = make_llm(args.writer)
        train_rows = dataset.indices("train")
        replies = generate_preferences(writer, dataset, train_rows, n=args.n_texts, temperature=args.temperature,
                                       progress=progress, prompt=args.prompt)
        flat = embed_texts([t for r in replies for t in r], args.encoder, progress=progress)
        texts = {int(r): flat[k * args.n_texts:(k + 1) * args.n_texts] for k, r in enumerate(train_rows)}
        for split in ("val", "test"):
            # Evaluated with the greedy (temperature 0) text of each held-out session.
            greedy = generate_preferences(writer, dataset, dataset.indices(split), n=1, temperature=0.0, progress=False,
                                          prompt=args.prompt)
            held_out[split] = embed_texts([r[0] for r in greedy], args.encoder)
    text_dim = next(iter(texts.values())).shape[1] if texts else 0
    config = SASRecConfig(n_items=len(dataset.catalog), dim=args.dim, n_blocks=args.blocks, dropout=args.dropout,
                          text_dim=text_dim)
    model = train_sasrec(dataset, config, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         sessions=sessions, loss=args.loss, negatives=args.negatives, texts=texts,
                         encoder=args.encoder if args.knowledge else None, threads=args.threads,
                         validate_every=args.validate_every, progress=progress)
    metrics = {split: {"sasrec": evaluate_recommender(model, dataset, split),
                       "popularity": evaluate_recommender(PopularityRecommender(dataset, sessions=sessions), dataset,
                                                          split)}
               for split in ("val", "test")}
    for split, embeddings in held_out.items():
        metrics[split]["sasrec_with_text"] = evaluate_recommender(model, dataset, split, embeddings)
    model.info["metrics"] = metrics
    if args.knowledge:
        model.info["preference_texts"] = {"writer": writer.name, "n": args.n_texts,
                                          "temperature": args.temperature, "prompt": args.prompt}
    out = model.save(args.out)
    print(f"test split ({metrics['test']['sasrec']['sessions']} sessions; val in config.json):")
    print(json.dumps(metrics["test"], indent=2))
    print(f"saved {out}/model.safetensors and {out}/config.json")
    return 0


def configure_dpo_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="an RLRF4Rec env id, e.g. RLRF4Rec-Synthetic-v0")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="gym.make kwargs, e.g. writer=simulated n_texts=10")
    parser.add_argument("--split", default="train", help="sessions to pair (default: %(default)s)")
    parser.add_argument("--out", required=True, help="the pairs file (JSON lines)")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="drop score pairs whose best-minus-worst NDCG@10 is not above this (default: %(default)s)")


def run_dpo_data(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from rec_gym.envs import RLRF4REC_ENV_IDS
    from rec_gym.envs.arguments import check_env_id, check_env_kwargs, parse_env_kwargs
    from rec_gym.recsys.dpo import preference_pairs, write_pairs

    check_env_id(args.env)
    if args.env not in RLRF4REC_ENV_IDS:
        raise ValueError(f"--env {args.env!r} is not an RLRF4Rec id; use one of {', '.join(RLRF4REC_ENV_IDS)}")
    if args.margin < 0:
        raise ValueError(f"--margin must be >= 0, got {args.margin}")
    kwargs = parse_env_kwargs(args.env_kwargs)
    check_env_kwargs(args.env, kwargs)
    env = gym.make(args.env, split=args.split, **kwargs)
    pairs, counts = preference_pairs(env.unwrapped.task, margin=args.margin)
    out = write_pairs(pairs, args.out)
    print(json.dumps({**counts.as_dict(), "out": str(out)}, indent=2))
    return 0


def configure_dpo_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the model to tune: hf:<local folder> or a folder")
    parser.add_argument("--pairs", required=True, help="a pairs file written by `rec-gym dpo-data`")
    parser.add_argument("--out", required=True, help="folder for the tuned model (load it with llm=hf:<out>)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=2, help="pairs per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=5e-6, help="learning rate (default: %(default)s)")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO's beta (default: %(default)s)")
    parser.add_argument("--sft-weight", type=float, default=0.0,
                        help="add this weight times the chosen replies' negative log-likelihood to the DPO loss "
                             "(RPO; keeps a small model's text from degenerating; default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")


def run_dpo_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rec_gym.recsys.dpo import dpo_train

    model = args.model[3:] if args.model.startswith("hf:") else args.model
    if not Path(model).is_dir():
        raise FileNotFoundError(f"--model {args.model!r}: {model} is not a local model folder; dpo-train tunes a "
                                "model saved on this machine (a Hub model: download it first, e.g. with "
                                "huggingface-cli download, and pass its folder)")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    out = dpo_train(model, args.pairs, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    beta=args.beta, seed=args.seed, sft_weight=args.sft_weight)
    print(f"tuned model written to {out}; use it with llm='hf:{out}' (or --writer hf:{out})")
    return 0


def configure_rlrf4rec_loop(parser: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    from rec_gym.agents.rlrf4rec_loop import LoopConfig

    parser.add_argument("--out", required=True, help="folder for the rounds, the summary and the plot; a folder "
                        "holding an unfinished run with the same settings is resumed")
    helps = {"dataset": "the world the loop runs in (only synthetic)", "rounds": "DPO rounds after fine-tuning",
             "n": "texts sampled per session and round", "temperature": "sampling temperature",
             "prompt": "what the writer reads of the history: titles, facts (each title with its genres, creator "
                       "and tier) or profile (the titles and the most frequent facts with counts)",
             "sft_sessions": "training sessions whose teacher texts fine-tune the writer",
             "sft_samples": "teacher texts per fine-tuning session", "sft_epochs": "fine-tuning epochs",
             "sft_temperature": "the teacher's sampling temperature for the fine-tuning texts (lower: more of them "
                                "faithful)", "sft_lr": "fine-tuning learning rate",
             "train_sessions": "training sessions sampled for pairs each round",
             "eval_sessions": "held-out (test) sessions measured after each round",
             "dpo_epochs": "passes over each round's pairs", "dpo_batch_size": "pairs per DPO step",
             "dpo_lr": "DPO learning rate", "dpo_beta": "DPO's beta",
             "dpo_sft_weight": "weight of the chosen texts' negative log-likelihood added to the DPO loss (RPO)",
             "pair_margin": "the least difference in pair_score between two well-formed texts that makes a pair",
             "pair_score": "what picks each pair's best and worst text: the target's log-probability among the "
                           "candidates (log_prob) or the reward, NDCG@10 (ndcg)", "seed": "seed of every draw and of training"}
    for field in fields(LoopConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                            help=f"{helps[field.name]} (default: %(default)s)")


def run_rlrf4rec_loop(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from rec_gym.agents.rlrf4rec_loop import LoopConfig, run_loop

    config = LoopConfig(**{f.name: getattr(args, f.name) for f in fields(LoopConfig)})
    summary = run_loop(args.out, config)
    print(f"{len(summary['rounds']) - 1} DPO round(s) in {args.out}; figures in {args.out}/summary.md and "
          f"{args.out}/rounds.png")
    return 0


COMMANDS = {
    "train-recsys": (configure_train_recsys, run_train_recsys,
                     "train and evaluate SASRec (plain or knowledge-augmented) on a dataset"),
    "dpo-data": (configure_dpo_data, run_dpo_data,
                 "write DPO preference pairs (best vs worst preference text per session) from an RLRF4Rec env"),
    "dpo-train": (configure_dpo_train, run_dpo_train,
                  "tune an hf: model on DPO pairs with TRL's DPOTrainer (the [dpo] extra)"),
    "rlrf4rec-loop": (configure_rlrf4rec_loop, run_rlrf4rec_loop,
                      "RLRF4Rec's loop on a CPU: fine-tune a tiny writer, then rounds of sample, score, pair, DPO"),
}
