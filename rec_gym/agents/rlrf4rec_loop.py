"""RLRF4Rec's loop, closed on a CPU: a tiny writer (:mod:`rec_gym.recsys.writer`) is fine-tuned on a teacher's
preference texts, then each round samples texts for training sessions, scores them with the recommender,
pairs the best against the worst and tunes the writer with TRL's DPO.

Rounds (each a folder under ``out``; a finished round is never redone, so a killed run resumes):

- ``round-0``: the tokenizer is trained and the writer fine-tuned on ``sft_samples`` teacher texts
  (the simulated writer at ``sft_temperature``) for each of ``sft_sessions`` training sessions;
- ``round-r`` (``r >= 1``): round ``r - 1``'s writer samples ``n`` texts at ``temperature`` for each of
  ``train_sessions`` training sessions, drawn afresh each round (seed ``seed + r``); the reward model (the knowledge-augmented
  SASRec of ``RLRF4Rec-<dataset>-v0``, the same cached model) scores each; the best and the worst by
  ``pair_score`` form a pair: by default the target's log-probability among the candidates, a graded score
  where the reward (NDCG@10) is 0 for every rank past 10, so fewer pairs are decided by a lucky rank
  (:func:`rec_gym.recsys.dpo.pick_pair`: a reply that breaks the structure is never chosen and always
  rejected; two well-formed texts must differ by more than ``pair_margin``);
  :func:`rec_gym.recsys.dpo.dpo_train` tunes round ``r - 1``'s writer on the pairs, with the chosen texts'
  likelihood added to the loss at ``dpo_sft_weight`` (RPO), which keeps a writer this small from
  degenerating into repeated phrases.

The writer is asked with the ``"profile"`` prompt (``prompt``): the history's titles, then its most frequent
genres, creator and decade with their counts and its tiers, since a model trained from scratch knows nothing
of the catalog (:func:`rec_gym.recsys.preferences.preference_prompt`). With the defaults the writer's
fine-tuning loss falls in two steps: it first learns the replies' form and only after about 800 steps starts
reading the prompt (copying the listed genres); fewer epochs leave a writer whose facts are guesses.

After each round, on ``eval_sessions`` held-out sessions (the test split: nothing in a run is chosen by them,
though the default settings were picked in trial runs measured on the first 150 of them),
with the same sampling seed every round: the mean reward of the ``n`` sampled texts per session and of the
greedy text; the shares of faithful, unhelpful, wrong and broken sampled texts
(:func:`rec_gym.llm.simulated_preferences.text_kind`); and the frozen ranker's NDCG@10 (the simulated LLM
reading the text as its hint) with the greedy and the sampled texts. The reward *is* the
knowledge-augmented recommender's NDCG@10 among the candidates reading the text. Every figure of round
``r`` gets a 95% paired bootstrap interval against round 0 over the held-out sessions.

Files: ``round-<r>/`` (the writer, ``writer.json``; ``pairs.jsonl`` and ``dpo.json`` for ``r >= 1``;
``eval.json`` with the per-session figures), ``summary.json``, ``summary.md`` and ``rounds.png``.
Everything runs offline: the simulated teacher, reward data and ranker are not language models, and
the writer is under a million parameters; the figures show the loop's machinery at work, not what a real
LLM would gain.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rec_gym.data.types import SessionDataset
from rec_gym.llm.protocol import RankRequest
from rec_gym.llm.simulated_preferences import KINDS, text_kind
from rec_gym.metrics import ndcg_at_k
from rec_gym.recsys.preferences import (PROMPTS, generate_preferences, parse_preference, preference_request, preference_text,
                                        session_latent)

TOP_K = 10
FIGURES = ("sampled_reward", "greedy_reward", "faithful_share", "ranker_greedy", "ranker_sampled")


@dataclass(frozen=True)
class LoopConfig:
    """The loop's settings (see the module docstring); the defaults fit about 20 minutes on two shared CPU cores.

    ``dataset`` is ``"synthetic"`` (the one world the loop runs in); the rest size each stage.
    """

    dataset: str = "synthetic"
    rounds: int = 3
    n: int = 8
    temperature: float = 1.0
    prompt: str = "profile"
    sft_sessions: int = 3200
    sft_samples: int = 1
    sft_epochs: int = 12
    sft_temperature: float = 0.3
    sft_lr: float = 3e-3
    train_sessions: int = 600
    eval_sessions: int = 400
    dpo_epochs: int = 2
    dpo_batch_size: int = 8
    dpo_lr: float = 2e-4
    dpo_beta: float = 0.1
    dpo_sft_weight: float = 1.0
    pair_margin: float = 0.05
    pair_score: str = "log_prob"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset != "synthetic":
            raise ValueError(f"dataset={self.dataset!r}: the loop runs on 'synthetic' only (its reward model is "
                             "RLRF4Rec-Synthetic-v0's, with the hashing encoder); pass --dataset synthetic")
        for name in ("rounds", "n", "sft_sessions", "sft_samples", "sft_epochs", "train_sessions", "eval_sessions",
                     "dpo_epochs", "dpo_batch_size"):
            if int(getattr(self, name)) < (0 if name == "rounds" else 1):
                raise ValueError(f"{name} must be >= {0 if name == 'rounds' else 1}, got {getattr(self, name)}")
        if self.n < 2:
            raise ValueError(f"n must be >= 2 (a pair needs two texts), got {self.n}")
        if self.prompt not in PROMPTS:
            raise ValueError(f"prompt={self.prompt!r}: use one of {list(PROMPTS)}")
        if not self.sft_temperature >= 0:
            raise ValueError(f"sft_temperature must be >= 0, got {self.sft_temperature}")
        for name in ("sft_lr", "dpo_lr", "dpo_beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (self.dpo_sft_weight >= 0 and self.pair_margin >= 0):
            raise ValueError(f"dpo_sft_weight and pair_margin must be >= 0, got {self.dpo_sft_weight} and "
                             f"{self.pair_margin}")
        if self.pair_score not in ("ndcg", "log_prob"):
            raise ValueError(f"pair_score={self.pair_score!r}: use 'ndcg' or 'log_prob'")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (DPO reshapes sampled texts), got {self.temperature}")


class LoopWorld:
    """What every round reads: the dataset, the reward model, the frozen ranker, and the sessions' prompts."""

    def __init__(self, config: LoopConfig, progress: bool = True, recommender: Any = None) -> None:
        from rec_gym.data import load_dataset
        from rec_gym.envs.rlrf4rec import DEFAULT_RECSYS_TRAINING
        from rec_gym.llm import make_llm
        from rec_gym.recsys.reward import RecsysRewardModel, knowledge_recommender
        from rec_gym.recsys.sequences import TRAIN_HISTORY, longer_sessions

        self.config = config
        self.dataset: SessionDataset = load_dataset(config.dataset)
        self.teacher = make_llm("simulated")
        self.ranker = make_llm("simulated")
        if recommender is None:
            # The reward model of RLRF4Rec-<dataset>-v0 with its defaults: the same arguments find the same cached model.
            sessions = longer_sessions(self.dataset, config.dataset, None, max_history=TRAIN_HISTORY, seed=0, n_train=None)
            recommender = knowledge_recommender(self.dataset, self.teacher, "hashing", 10, 1.0,
                                                dict(DEFAULT_RECSYS_TRAINING), progress=progress, sessions=sessions)
        self.reward_model = RecsysRewardModel(recommender, self.dataset)
        rng = np.random.default_rng(config.seed)
        train = rng.permutation(self.dataset.indices("train"))
        self.sft_rows = np.sort(train[:config.sft_sessions])
        self.eval_rows = np.sort(self.dataset.indices("test")[:config.eval_sessions])

    def round_rows(self, r: int) -> np.ndarray:
        """The ``train_sessions`` training sessions round ``r`` samples, drawn afresh each round (seed ``seed + r``),
        so that no round's pairs teach the writer the lucky texts of the sessions an earlier round saw."""
        rng = np.random.default_rng(self.config.seed + r)
        return np.sort(rng.permutation(self.dataset.indices("train"))[:self.config.train_sessions])

    def messages(self, row: int) -> list[dict[str, str]]:
        """The chat messages of session ``row``'s preference request: what any writer model reads."""
        return list(preference_request(self.dataset.session_items(int(row))[0], self.dataset.domain,
                                       prompt=self.config.prompt).as_dicts())

    def rewards(self, rows: np.ndarray, replies: list[list[str]]) -> np.ndarray:
        """float64 ``(len(rows), n)``: the reward model's NDCG@10 of each reply."""
        width = len(replies[0])
        flat = self.reward_model.scores(np.repeat(rows, width), [t for texts in replies for t in texts])
        return flat.reshape(len(rows), width)

    def ranker_ndcg(self, rows: np.ndarray, replies: list[list[str]]) -> np.ndarray:
        """float64 ``(len(rows), n)``: the frozen ranker's NDCG@10 of the target with each reply as its hint."""
        requests, targets = [], []
        for row, texts in zip(rows, replies):
            history, candidates = self.dataset.session_items(int(row))
            for text in texts:
                requests.append(RankRequest(tuple(history), tuple(candidates), preference_text(text) or None,
                                            self.dataset.domain))
                targets.append(int(self.dataset.target_pos[int(row)]))
        ranks = [1 + ranking.index(t) for ranking, t in zip(self.ranker.rank(requests), targets)]
        return np.asarray(ndcg_at_k(np.array(ranks), TOP_K), dtype=np.float64).reshape(len(rows), -1)

    def kinds(self, rows: np.ndarray, replies: list[list[str]]) -> np.ndarray:
        """str ``(len(rows), n)``: the kind of each reply (:func:`~rec_gym.llm.simulated_preferences.text_kind`)."""
        return np.array([[text_kind(t, self.dataset.session_items(int(r))[0], self.dataset.domain,
                                    session_latent(self.dataset, int(r))) for t in texts]
                         for r, texts in zip(rows, replies)])


def run_loop(out: str | os.PathLike, config: LoopConfig = LoopConfig(), progress: bool = True,
             recommender: Any = None) -> dict[str, Any]:
    """Run (or resume) the loop into ``out``; returns the summary (also written as ``summary.json``/``.md``).

    ``recommender``: the reward model's knowledge-augmented SASRec (default: the env's, trained once and cached).
    """
    import torch

    if config.rounds:
        try:  # before the minutes of fine-tuning, not after them
            import datasets  # noqa: F401
            import trl  # noqa: F401
        except ImportError as exc:
            from rec_gym.extras import MissingExtra

            raise MissingExtra("rec-gym rlrf4rec-loop", "dpo", exc) from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "config.json"
    if settings.is_file() and json.loads(settings.read_text()) != asdict(config):
        raise ValueError(f"{out} holds a loop run with other settings ({settings}); pass another --out or the same "
                         "settings to resume it")
    settings.write_text(json.dumps(asdict(config), indent=2) + "\n")
    started = time.time()
    threads = torch.get_num_threads()
    # One thread: on a shared CPU, more threads than free cores made each step several times slower.
    torch.set_num_threads(1)
    try:
        world = LoopWorld(config, progress, recommender)
        _run_rounds(world, out, progress)
    finally:
        torch.set_num_threads(threads)
    summary = summarise(out, config)
    summary["seconds_this_run"] = round(time.time() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(render_summary(summary))
    plot_rounds(summary, out / "rounds.png")
    return summary


def _run_rounds(world: LoopWorld, out: Path, progress: bool) -> None:
    """Every round not yet finished: its writer, then its held-out figures."""
    from rec_gym.recsys.writer import load_writer

    config = world.config
    for r in tqdm(range(config.rounds + 1), desc="RLRF4Rec loop rounds", unit="round", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True):
        folder = out / f"round-{r}"
        if not (folder / "writer.json").is_file():
            if r == 0:
                _fine_tune(world, folder, progress)
            else:
                _dpo_round(world, out / f"round-{r - 1}", folder, r, progress)
        if not (folder / "eval.json").is_file():
            model, tokenizer = load_writer(folder)
            figures = _evaluate(world, model, tokenizer, progress)
            (folder / "eval.json").write_text(json.dumps(figures) + "\n")


def _fine_tune(world: LoopWorld, folder: Path, progress: bool) -> None:
    from rec_gym.recsys.writer import new_writer, parameter_count, prompt_text, save_writer, supervised_fine_tune, train_tokenizer

    config = world.config
    started = time.time()
    teacher = generate_preferences(world.teacher, world.dataset, world.sft_rows, n=config.sft_samples,
                                   temperature=config.sft_temperature, progress=progress, prompt=config.prompt)
    messages = [world.messages(int(r)) for r in world.sft_rows]
    corpus = [m[-1]["content"] for m in messages] + [t for texts in teacher for t in texts]
    tokenizer = train_tokenizer(corpus)
    model = new_writer(tokenizer, seed=config.seed)
    prompts = [prompt_text(tokenizer, m) for m, texts in zip(messages, teacher) for _ in texts]
    replies = [t for texts in teacher for t in texts]
    losses = supervised_fine_tune(model, tokenizer, prompts, replies, epochs=config.sft_epochs, lr=config.sft_lr,
                                  seed=config.seed, progress=progress)
    save_writer(model, tokenizer, folder, {"round": 0, "teacher": world.teacher.name, "sft_examples": len(replies),
                                           "epoch_losses": losses, "parameters": parameter_count(model),
                                           "seconds": round(time.time() - started, 1)})


def _dpo_round(world: LoopWorld, previous: Path, folder: Path, r: int, progress: bool) -> None:
    from rec_gym.recsys.dpo import PairCounts, dpo_train, pick_pair, write_pairs
    from rec_gym.recsys.writer import load_writer, prompt_text, sample_replies

    config = world.config
    started = time.time()
    model, tokenizer = load_writer(previous)
    rows = world.round_rows(r)
    messages = [world.messages(int(row)) for row in rows]
    replies = sample_replies(model, tokenizer, [prompt_text(tokenizer, m) for m in messages], config.n,
                             config.temperature, seed=config.seed + r, progress=progress,
                             desc=f"round {r}: sampling training texts")
    # Pairs are chosen by the target's log-probability (graded) or by the reward itself (NDCG@10, 0 past rank 10).
    # The log-probabilities go first: the ranks they imply are kept, so the rewards after them are lookups.
    log_probs = None if config.pair_score == "ndcg" else world.reward_model.log_probabilities(
        np.repeat(rows, config.n), [t for texts in replies for t in texts]).reshape(len(rows), config.n)
    rewards = world.rewards(rows, replies)
    pair_scores = rewards if log_probs is None else log_probs
    counts = PairCounts(margin=config.pair_margin)
    pairs = []
    for k, texts in enumerate(replies):
        picked = pick_pair(pair_scores[k], np.array([parse_preference(t) is not None for t in texts]),
                           config.pair_margin, counts)
        if picked is not None:
            chosen, rejected, kind = picked
            pairs.append({"prompt": messages[k], "chosen": [{"role": "assistant", "content": texts[chosen]}],
                          "rejected": [{"role": "assistant", "content": texts[rejected]}],
                          "chosen_score": float(pair_scores[k, chosen]),
                          "rejected_score": float(pair_scores[k, rejected]),
                          "chosen_reward": float(rewards[k, chosen]), "rejected_reward": float(rewards[k, rejected]),
                          "kind": kind, "session_id": str(world.dataset.session_ids[int(rows[k])])})
    if not pairs:
        fix = ("every session's texts broke the Factors:/Preference: structure, so the writer needs more "
               "fine-tuning (sft_epochs, sft_sessions)" if counts.dropped_malformed == counts.sessions else
               "sample more texts (n) or sessions (train_sessions), or lower pair_margin")
        raise ValueError(f"round {r}: no session gave a pair ({counts.as_dict()}): {fix}")
    folder.mkdir(parents=True, exist_ok=True)
    pairs_path = write_pairs(pairs, folder / "pairs.jsonl")
    steps = config.dpo_epochs * math.ceil(len(pairs) / config.dpo_batch_size)
    dpo_train(previous, pairs_path, folder, steps=steps, batch_size=config.dpo_batch_size, lr=config.dpo_lr,
              beta=config.dpo_beta, seed=config.seed + r, max_length=384, sft_weight=config.dpo_sft_weight)
    (folder / "writer.json").write_text(json.dumps({"round": r, "base": previous.name, "pairs": counts.as_dict(),
                                                    "train_mean_reward": float(rewards.mean()), "dpo_steps": steps,
                                                    "seconds": round(time.time() - started, 1)}, indent=2) + "\n")


def _evaluate(world: LoopWorld, model: Any, tokenizer: Any, progress: bool) -> dict[str, Any]:
    """Per-session figures of one writer on the held-out sessions (the same sampling seed every round)."""
    from rec_gym.recsys.writer import prompt_text, sample_replies

    config, rows = world.config, world.eval_rows
    prompts = [prompt_text(tokenizer, world.messages(int(r))) for r in rows]
    sampled = sample_replies(model, tokenizer, prompts, config.n, config.temperature, seed=10_000 + config.seed,
                             progress=progress, desc="held-out sessions: sampling")
    greedy = sample_replies(model, tokenizer, prompts, 1, 0.0)
    kinds = world.kinds(rows, sampled)
    return {"sampled_reward": world.rewards(rows, sampled).mean(axis=1).tolist(),
            "greedy_reward": world.rewards(rows, greedy)[:, 0].tolist(),
            "faithful_share": (kinds == "faithful").mean(axis=1).tolist(),
            "ranker_greedy": world.ranker_ndcg(rows, greedy)[:, 0].tolist(),
            "ranker_sampled": world.ranker_ndcg(rows, sampled).mean(axis=1).tolist(),
            "kind_shares": {k: float((kinds == k).mean()) for k in KINDS},
            "no_text_reward": world.reward_model.scores(rows, [None] * len(rows)).tolist(),
            "no_text_ranker": world.ranker_ndcg(rows, [[""]] * len(rows))[:, 0].tolist(),
            "examples": [sampled[k][0] for k in range(3)] + [greedy[0][0]]}


def summarise(out: Path, config: LoopConfig, reps: int = 10_000) -> dict[str, Any]:
    """Per-round means, and each round's paired difference against round 0 with its 95% interval."""
    from rec_gym.agents.statistics import paired_difference_ci

    rounds = []
    base = json.loads((out / "round-0" / "eval.json").read_text())
    for r in range(config.rounds + 1):
        path = out / f"round-{r}" / "eval.json"
        if not path.is_file():
            break
        figures = json.loads(path.read_text())
        entry: dict[str, Any] = {"round": r, "kind_shares": figures["kind_shares"], "examples": figures["examples"]}
        for name in FIGURES:
            values = np.array(figures[name])
            entry[name] = float(values.mean())
            if r:
                mean, low, high = paired_difference_ci(values.reshape(1, -1), np.array(base[name]).reshape(1, -1),
                                                       reps=reps)
                entry[f"{name} minus round 0"] = {"mean": mean, "low": low, "high": high}
        info = json.loads((out / f"round-{r}" / "writer.json").read_text())
        entry["writer"] = info
        rounds.append(entry)
    return {"config": asdict(config), "out": str(out), "eval_sessions": len(base["sampled_reward"]),
            "no_text": {"reward": float(np.mean(base["no_text_reward"])), "ranker": float(np.mean(base["no_text_ranker"]))},
            "rounds": rounds}


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table: per round, each figure and its difference from round 0."""
    labels = {"sampled_reward": "reward, sampled", "greedy_reward": "reward, greedy", "faithful_share": "faithful share",
              "ranker_greedy": "ranker NDCG@10, greedy", "ranker_sampled": "ranker NDCG@10, sampled"}
    config = summary["config"]
    defaults = asdict(LoopConfig())
    options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in config.items() if v != defaults[k])
    seconds = sum(float(e["writer"].get("seconds", 0.0)) for e in summary["rounds"])
    lines = [f"# RLRF4Rec loop on {config['dataset']}: a tiny writer, fine-tuned (round 0), then DPO rounds", "",
             f"Command: `rec-gym rlrf4rec-loop --out {summary['out']}{options}`; settings: {config}. Training the "
             f"writers took {seconds / 60:.1f} minutes (held-out figures and the reward model's load not counted).", "",
             "| round | " + " | ".join(labels.values()) + " | unhelpful | wrong | broken |",
             "|---" * (len(labels) + 4) + "|"]
    for entry in summary["rounds"]:
        cells = []
        for name in FIGURES:
            diff = entry.get(f"{name} minus round 0")
            cells.append(f"{entry[name]:.3f}" + ("" if diff is None else
                                                 f" ({diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}])"))
        shares = entry["kind_shares"]
        lines.append(f"| {entry['round']} | " + " | ".join(cells) +
                     f" | {shares['unhelpful']:.2f} | {shares['wrong']:.2f} | {shares['broken']:.2f} |")
    no_text = summary["no_text"]
    lines += ["", f"Held-out sessions: {summary['eval_sessions']} (test split). With no text: reward (the "
              f"knowledge-augmented SASRec's NDCG@10) {no_text['reward']:.3f}, frozen ranker NDCG@10 "
              f"{no_text['ranker']:.3f}. In brackets: the paired difference from round 0 and its 95% bootstrap interval."]
    return "\n".join(lines) + "\n"


def plot_rounds(summary: dict[str, Any], path: Path) -> None:
    """One panel per figure: its mean per round; round r's bar is its 95% paired interval against round 0, placed
    so that a bar wholly above the dashed line (round 0) is a difference whose interval is above 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = summary["rounds"]
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(4 * len(FIGURES), 3.2))
    for ax, name in zip(axes, FIGURES):
        x = [e["round"] for e in rounds]
        y = [e[name] for e in rounds]
        base = rounds[0][name]
        low = [0.0] + [y[i] - (base + rounds[i][f"{name} minus round 0"]["low"]) for i in range(1, len(rounds))]
        high = [0.0] + [(base + rounds[i][f"{name} minus round 0"]["high"]) - y[i] for i in range(1, len(rounds))]
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3)
        ax.axhline(base, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("round")
        ax.set_xticks(x)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
