"""Benchmark: algorithms x seeds x envs, trained on train, curves on val, scored on test, beside the baselines.

A config (a YAML file, or the name of one shipped in ``rec_gym/agents/configs/``: ``quick``, ``full``)::

    name: quick                       # results go to ./results/<name>/ unless `out` is set
    algos: [ppo, a2c, dqn]            # SB3 algorithms; hyperparameters from rec_gym/agents/hyperparams/<algo>.yml
    seeds: [0, 1, 2, 3, 4]
    timesteps: 40000                  # per run (an env may override)
    val_every: 5000                   # val NDCG@10 every so many env steps
    keep: final                       # or best_val: score the val-best point of each run's curve (train's keep)
    workers: 2                        # parallel runs (one torch thread each)
    baselines: [no_hint, random, best_fixed, linucb, oracle]
    linucb: {alpha: 0.5, steps: 6400}
    envs:
      - id: Re2LLM-Synthetic-v0
        label: Synthetic              # optional; the name in tables and plots
        kwargs: {}                    # gym.make kwargs (never `split`)
        timesteps: 40000              # optional override
        kb: {build: {max_hints: 20}}  # optional: build the KB from the train split first (rec-gym build-kb's
                                      # options; support on by default); written beside the results
        hint_sets:                    # optional: runs that put several hints in the prompt, as rows of this env
          - {env: Re2LLMCompose-Synthetic-v0, algo: maskable_ppo, kwargs: {max_hints: 3}}
          - {env: hint_team_v0, algo: ppo, kwargs: {n_agents: 3}, label: PPO team, timesteps: 20000}

A ``hint_sets`` row trains ``algo`` on a composition id or on ``hint_team_v0`` with the env's
``kwargs`` plus its own, and is scored like every other row: the same test sessions (checked before
anything trains), the same metrics, the same intervals over seeds and the same paired interval
against the best fixed hint. Its label defaults to ``"<ALGO> (composition)"`` or ``"<ALGO> (team)"``.

Nothing is selected on test: every run's final model (with ``keep: best_val``, the point of its val
curve with the highest val NDCG@10) is scored once on the test split. Writes
``results.csv`` (one row per env, method and seed), ``curves.csv`` (val NDCG@10 per step),
``results.md`` (mean, IQM and 95% stratified-bootstrap intervals over seeds), ``learning_curves.png``,
``comparison.png`` and ``command.txt`` (the command, the config and the machine).
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from rec_gym.agents.baselines import BestFixedHint, LinUCB, NoHint, Oracle, UniformRandomHint
from rec_gym.agents.evaluation import METRICS, evaluate
from rec_gym.agents.statistics import BOOTSTRAP_REPS, mean, paired_difference_ci, stratified_bootstrap_ci, summarize
from rec_gym.agents.tasks import make_env
from rec_gym.metrics import ndcg_at_k

BASELINES = ("no_hint", "random", "best_fixed", "linucb", "oracle")
BASELINE_LABELS = {"no_hint": "no hint", "random": "random hint", "best_fixed": "best fixed hint",
                   "linucb": "LinUCB", "oracle": "oracle (upper bound)"}
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
# The config's ``keep`` (train's keep) and how the tables name the policy it scores.
KEPT = {"final": "final policy", "best_val": "val-selected policy (the point of its val curve with the highest val NDCG@10)"}


def config_path(name_or_path: str | os.PathLike) -> Path:
    """The YAML file of a shipped config name (``"quick"``) or of a path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIGS_DIR / f"{path.name}.yaml"
    if path.name == os.fspath(name_or_path) and not path.suffix and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"benchmark config {os.fspath(name_or_path)!r} does not exist: pass a YAML file or a "
                            f"shipped name ({names})")


@dataclass
class EnvConfig:
    id: str
    label: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    timesteps: int | None = None
    kb_build: dict[str, Any] | None = None
    hint_sets: list["HintSetRun"] = field(default_factory=list)


@dataclass
class HintSetRun:
    """A ``hint_sets`` row of an env: ``algo`` on ``env_id`` (a composition id or the team) with the env's kwargs plus ``kwargs``."""

    env_id: str
    algo: str
    label: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    timesteps: int | None = None


@dataclass
class BenchmarkConfig:
    name: str
    algos: list[str]
    seeds: list[int]
    envs: list[EnvConfig]
    timesteps: int | None = None
    val_every: int = 5000
    keep: str = "final"
    workers: int = 2
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    linucb: dict[str, Any] = field(default_factory=dict)
    bootstrap_reps: int = BOOTSTRAP_REPS
    out: Path | None = None
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BenchmarkConfig":
        path = config_path(path)
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        unknown = set(raw) - {"name", "algos", "seeds", "envs", "timesteps", "val_every", "keep", "workers",
                              "baselines", "linucb", "bootstrap_reps", "out"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        envs = []
        for k, entry in enumerate(raw.get("envs") or []):
            entry = {"id": entry} if isinstance(entry, str) else dict(entry)
            if "id" not in entry:
                raise ValueError(f"{path}: envs[{k}] has no 'id'")
            kwargs = dict(entry.get("kwargs") or {})
            if "split" in kwargs:
                raise ValueError(f"{path}: envs[{k}].kwargs sets split; the benchmark picks the splits itself")
            kb_build = _kb_build_options(path, k, entry.get("kb"), kwargs)
            hint_sets = [_hint_set_run(path, k, j, row) for j, row in enumerate(entry.get("hint_sets") or [])]
            envs.append(EnvConfig(entry["id"], entry.get("label", entry["id"]), kwargs, entry.get("timesteps"), kb_build,
                                  hint_sets))
        if not envs:
            raise ValueError(f"{path}: 'envs' is empty; list at least one env id")
        if raw.get("keep", "final") not in KEPT:
            raise ValueError(f"{path}: keep={raw['keep']!r} is not one of {tuple(KEPT)}")
        baselines = list(raw.get("baselines", BASELINES))
        bad = set(baselines) - set(BASELINES)
        if bad:
            raise ValueError(f"{path}: unknown baselines {sorted(bad)}; choose from {BASELINES}")
        out = raw.get("out")
        return cls(name=raw.get("name", path.stem), algos=[a.lower() for a in raw.get("algos", [])],
                   seeds=[int(s) for s in raw.get("seeds", [0, 1, 2, 3, 4])], envs=envs,
                   timesteps=raw.get("timesteps"), val_every=int(raw.get("val_every", 5000)),
                   keep=str(raw.get("keep", "final")),
                   workers=int(raw.get("workers", 2)), baselines=baselines, linucb=dict(raw.get("linucb") or {}),
                   bootstrap_reps=int(raw.get("bootstrap_reps", BOOTSTRAP_REPS)),
                   out=Path(out) if out else None, path=path)

    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("results") / self.name


def _hint_set_run(path: Path, k: int, j: int, row: Any) -> HintSetRun:
    """``envs[k].hint_sets[j]`` checked: a known env and an algorithm that trains on it, no split."""
    from rec_gym.agents.hint_sets import is_hint_set_env
    from rec_gym.agents.training import check_algo

    where = f"{path}: envs[{k}].hint_sets[{j}]"
    if not isinstance(row, dict) or not {"env", "algo"} <= set(row) or set(row) - {"env", "algo", "kwargs", "label",
                                                                                      "timesteps"}:
        raise ValueError(f"{where} must be {{env: <Re2LLMCompose-* id or hint_team_v0>, algo: ..., kwargs: {{}}, "
                         f"label: ..., timesteps: ...}} (env and algo required), got {row!r}")
    if not is_hint_set_env(row["env"]):
        raise ValueError(f"{where}: env={row['env']!r} is not a Re2LLMCompose-* id or hint_team_v0")
    try:
        check_algo(str(row["algo"]), row["env"])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    kwargs = dict(row.get("kwargs") or {})
    if "split" in kwargs:
        raise ValueError(f"{where}.kwargs sets split; the benchmark picks the splits itself")
    algo = str(row["algo"]).lower()
    kind = "team" if row["env"] == "hint_team_v0" else "composition"
    return HintSetRun(row["env"], algo, str(row.get("label") or f"{algo.upper()} ({kind})"), kwargs, row.get("timesteps"))


KB_BUILD_OPTIONS = ("max_hints", "max_sessions", "dedup", "similarity", "encoder", "support", "support_sessions",
                    "seed", "response_cache")


def _kb_build_options(path: Path, k: int, kb: Any, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The options of ``envs[k].kb: {build: {...}}``, or ``None`` when the entry has no ``kb``."""
    if kb is None:
        return None
    if not isinstance(kb, dict) or set(kb) != {"build"} or not isinstance(kb["build"] or {}, dict):
        raise ValueError(f"{path}: envs[{k}].kb must be {{build: {{...options...}}}}; a ready KB goes in kwargs as kb=<path>")
    if "kb" in kwargs:
        raise ValueError(f"{path}: envs[{k}] sets both kwargs.kb and kb.build; keep one")
    options = dict(kb["build"] or {})
    unknown = sorted(set(options) - set(KB_BUILD_OPTIONS))
    if unknown:
        raise ValueError(f"{path}: envs[{k}].kb.build: unknown options {unknown}; known: {list(KB_BUILD_OPTIONS)}")
    return {"support": True, **options}


def build_knowledge_bases(config: BenchmarkConfig, out: Path, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Build the KB of every env with ``kb: {build: ...}`` from its train split, write it to
    ``out/kb-<label>.json`` and point the env's ``kb`` kwarg at it. Returns ``{label: {path, hints, calls}}``."""
    from rec_gym.feedback.table import safe_name
    from rec_gym.knowledge.build import build_knowledge_base
    from rec_gym.envs.arguments import env_arguments, load_env_dataset
    from rec_gym.llm import make_llm

    built = {}
    for env in config.envs:
        if env.kb_build is None:
            continue
        arguments = env_arguments(env.id, env.kwargs)
        backend = make_llm(arguments.get("llm", "simulated"), **(arguments.get("llm_kwargs") or {}))
        path = out / f"kb-{safe_name(env.label)}.json"
        print(f"building the knowledge base of {env.label} from its train split", flush=True)
        report = build_knowledge_base(load_env_dataset(arguments), backend, progress=progress, name=path.stem,
                                      **env.kb_build)
        report.kb.save(path)
        print(report.summary(), flush=True)
        env.kwargs["kb"] = str(path)
        built[env.label] = {"path": str(path), "hints": len(report.kb), "calls": report.cost}
    return built


def _knowledge_base_section(built: dict[str, dict[str, Any]]) -> str:
    lines = ["## Knowledge bases built from the train split", "",
             "| env | KB file | hints | LLM calls to build (answer / reflect / analyse / hint / validate / dedup / "
             "support = total) |", "|---|---|---|---|"]
    for label, info in built.items():
        calls = info["calls"]
        lines.append(f"| {label} | {Path(info['path']).name} | {info['hints']} | "
                     f"{' / '.join(str(v) for v in calls.values())} = {sum(calls.values())} |")
    return "\n".join(lines) + "\n"


# ---- one job = one (env, method, seed); runs in a worker process ----

def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    env: EnvConfig = job["env"]
    method, seed = job["method"], job["seed"]
    started = time.time()
    curve_steps: list[int] = []
    curve_values: list[float] = []
    if method in ("no_hint", "random", "best_fixed", "linucb", "oracle"):
        if method == "no_hint":
            policy = NoHint()
        elif method == "oracle":
            policy = Oracle()
        elif method == "best_fixed":
            policy = BestFixedHint.fit(env.id, env.kwargs)
        else:
            train_env = make_env(env.id, "train", env.kwargs)
            if method == "random":
                policy = UniformRandomHint(train_env.action_space, seed=seed)
            else:
                settings = dict(job["linucb"])
                steps = settings.pop("steps", None)
                policy = LinUCB.for_env(train_env, seed=seed, **settings).fit(train_env, n_steps=steps)
            train_env.close()
        val = evaluate(policy, env.id, split="val", env_kwargs=env.kwargs)
        curve_steps, curve_values = [0], [val["NDCG@10"]]
        label, env_id = BASELINE_LABELS[method], env.id
        test = evaluate(policy, env.id, split="test", env_kwargs=env.kwargs)
    else:
        from rec_gym.agents.training import evaluate_policy, make_run_env, train

        run: HintSetRun | None = job.get("hint_set")
        env_id, kwargs = (env.id, env.kwargs) if run is None else (run.env_id, {**env.kwargs, **run.kwargs})
        result = train(method, env_id, kwargs, seed=seed, timesteps=job["timesteps"], out_dir=None,
                       val_every=job["val_every"], tensorboard=False, keep=job["keep"])
        curve_steps, curve_values = result.curve.steps, result.curve.ndcg
        test_env = make_run_env(env_id, "test", kwargs)
        test = evaluate_policy(result.policy, env_id, test_env)
        test_env.close()
        label = method.upper() if run is None else run.label
    row = {"env": env.label, "env_id": env_id, "method": label, "kind": "baseline" if method in BASELINES else "rl",
           "seed": seed, **{k: test[k] for k in METRICS}, "n_test_sessions": test.n_sessions,
           "seconds": round(time.time() - started, 2)}
    # The per-session ranks let the tables compare methods session by session (paired_gains).
    return {"row": row, "curve": list(zip(curve_steps, curve_values)), "test_ranks": test.ranks.tolist()}


def _jobs(config: BenchmarkConfig) -> list[dict[str, Any]]:
    jobs = []
    for env in config.envs:
        steps = env.timesteps or config.timesteps
        for method in config.algos:
            for seed in config.seeds:
                jobs.append({"env": env, "method": method, "seed": seed, "timesteps": steps,
                             "val_every": config.val_every, "keep": config.keep})
        for run in env.hint_sets:
            for seed in config.seeds:
                jobs.append({"env": env, "method": run.algo, "seed": seed, "timesteps": run.timesteps or steps,
                             "val_every": config.val_every, "keep": config.keep, "hint_set": run})
        for method in config.baselines:
            # Deterministic baselines give the same number for every seed; one run each is enough.
            seeds = config.seeds if method in ("random", "linucb") else config.seeds[:1]
            for seed in seeds:
                jobs.append({"env": env, "method": method, "seed": seed, "linucb": config.linucb})
    # Long jobs first, so the two workers finish together.
    return sorted(jobs, key=lambda j: j["method"] in BASELINES)


def _prepare_tables(config: BenchmarkConfig) -> None:
    """Fill every split's feedback table once, here, so parallel workers only read them."""
    for env in config.envs:
        for split in ("train", "val", "test"):
            e = make_env(env.id, split, env.kwargs)
            task = e.unwrapped.task
            missing = task.n_missing()  # the one-hint pairs: hint-set columns in the same file are not read here
            if missing:
                print(f"filling {missing} (session, hint) pairs of the {split} feedback table of {env.label}", flush=True)
                task.fill_all(progress=True)
            e.close()


def check_same_test_sessions(config: BenchmarkConfig) -> None:
    """Raise ``ValueError`` naming a ``hint_sets`` row whose test sessions are not its env's (so no paired interval would hold)."""
    from rec_gym.agents.training import make_run_env

    def session_ids(env_id: str, kwargs: dict[str, Any]) -> list[str]:
        env = make_run_env(env_id, "test", kwargs)
        task = env.unwrapped.task
        ids = [task.session_id(i) for i in range(task.n_sessions)]
        env.close()
        return ids

    for env in config.envs:
        if not env.hint_sets:
            continue
        expected = session_ids(env.id, env.kwargs)
        for run in env.hint_sets:
            found = session_ids(run.env_id, {**env.kwargs, **run.kwargs})
            if found != expected:
                raise ValueError(f"{config.path}: the hint_sets row {run.label!r} ({run.env_id}) of {env.label} has "
                                 f"{len(found)} test sessions that are not {env.id}'s {len(expected)}; give it the "
                                 "same dataset, data_dir and seed")


def run(config: BenchmarkConfig, progress: bool = True) -> Path:
    """Run every job of ``config`` and write its tables and plots; returns the output folder."""
    check_same_test_sessions(config)
    out = config.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    built = build_knowledge_bases(config, out, progress)
    _prepare_tables(config)
    jobs = _jobs(config)
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc=f"benchmark {config.name}", unit="run", disable=not progress, dynamic_ncols=True)
    if config.workers > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(config.workers, initializer=_init_worker) as pool:
            for result in pool.imap_unordered(_run_job, jobs):
                results.append(result)
                bar.update()
            # Let the workers exit on their own: the context manager's terminate() kills them and
            # leaves their semaphores to the resource tracker, which warns at shutdown.
            pool.close()
            pool.join()
    else:
        _init_worker()
        for job in jobs:
            results.append(_run_job(job))
            bar.update()
    bar.close()
    write_results(config, results, out)
    if built:
        with open(out / "results.md", "a", encoding="utf-8") as fh:
            fh.write("\n" + _knowledge_base_section(built))
    _write_command(config, out, time.time() - started)
    return out


# ---- outputs ----

def write_results(config: BenchmarkConfig, results: list[dict[str, Any]], out: Path) -> None:
    # The raw runs first, so tables and plots can be redrawn (rec_gym.agents.benchmark.redraw) if a later step fails.
    with open(out / "runs.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in results)
    rows = sorted((r["row"] for r in results), key=lambda r: (r["env"], r["kind"], r["method"], r["seed"]))
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "curves.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["env", "method", "seed", "timesteps", "val_ndcg10"])
        for r in sorted(results, key=lambda r: (r["row"]["env"], r["row"]["method"], r["row"]["seed"])):
            for step, value in r["curve"]:
                writer.writerow([r["row"]["env"], r["row"]["method"], r["row"]["seed"], step, round(value, 6)])
    summary = summarize_rows(rows, config.bootstrap_reps)
    gains = paired_gains(results, config.bootstrap_reps)
    (out / "results.md").write_text(results_markdown(config, rows, summary, gains), encoding="utf-8")
    order = [env.label for env in config.envs]
    plot_learning_curves(results, out / "learning_curves.png", config.bootstrap_reps, order)
    plot_comparison(summary, out / "comparison.png", order)


def redraw(config: BenchmarkConfig, out: Path | None = None) -> None:
    """Rewrite the tables and plots of a finished benchmark from its ``runs.jsonl``."""
    out = out or config.out_dir()
    with open(out / "runs.jsonl", encoding="utf-8") as fh:
        results = [json.loads(line) for line in fh if line.strip()]
    write_results(config, results, out)


def summarize_rows(rows: list[dict[str, Any]], reps: int = BOOTSTRAP_REPS) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(env, method): stats}`` with mean/IQM of test NDCG@10 and their 95% intervals, plus means of every metric."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["method"]), []).append(r)
    summary = {}
    for key, group in groups.items():
        stats = summarize(np.array([g["NDCG@10"] for g in group]), reps=reps)
        stats["kind"] = group[0]["kind"]
        stats.update({f"mean_{m}": float(np.mean([g[m] for g in group])) for m in METRICS})
        summary[key] = stats
    return summary


def paired_gains(results: list[dict[str, Any]], reps: int = BOOTSTRAP_REPS,
                 reference: str = BASELINE_LABELS["best_fixed"]) -> dict[tuple[str, str], tuple[float, float, float]]:
    """``{(env, method): (difference, low, high)}``: test NDCG@10 minus ``reference``'s, paired over test sessions.

    The interval resamples the test sessions and each method's seeds
    (:func:`~rec_gym.agents.statistics.paired_difference_ci`). Runs without per-session ranks (a
    ``runs.jsonl`` written before they were recorded) are left out.
    """
    scores: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in results:
        if "test_ranks" in r:
            scores.setdefault((r["row"]["env"], r["row"]["method"]), []).append(ndcg_at_k(np.asarray(r["test_ranks"]), 10))
    gains = {}
    for (env, method), runs in scores.items():
        base = scores.get((env, reference))
        if base is not None:
            gains[(env, method)] = paired_difference_ci(np.stack(runs), np.stack(base), reps=reps)
    return gains


def _gap_closed(score: float, fixed: float | None, oracle: float | None) -> float | None:
    """(score - best fixed) / (oracle - best fixed); ``None`` when the oracle is not above the best fixed hint."""
    if fixed is None or oracle is None or oracle <= fixed:
        return None
    return (score - fixed) / (oracle - fixed)


def _share(gap: float, spec: str) -> str:
    """``gap`` formatted by ``spec``, without the sign of a value that rounds to zero ("0%", not "-0%")."""
    text = format(gap, spec)
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


def _fmt(stats: dict[str, Any], what: str) -> str:
    return f"{stats[what]:.3f} [{stats[what + '_lo']:.3f}, {stats[what + '_hi']:.3f}]"


def results_markdown(config: BenchmarkConfig, rows: list[dict[str, Any]], summary: dict,
                     gains: dict[tuple[str, str], tuple[float, float, float]] | None = None) -> str:
    gains = gains or {}
    lines = [f"# Benchmark `{config.name}`", "",
             f"Test-split scores of each method's {KEPT[config.keep]} ({len(config.seeds)} seeds for RL, random hint and "
             "LinUCB; deterministic baselines once). NDCG@10 as mean and interquartile mean (IQM) over seeds with "
             "95% stratified-bootstrap confidence intervals (rliable's method, "
             f"{config.bootstrap_reps} resamples); like rliable's, these intervals measure the spread over training "
             "seeds, and every method is scored on the same test sessions. *vs best fixed* is the difference in test "
             "NDCG@10 from the best fixed hint with a 95% interval that also resamples the test sessions (a paired "
             "bootstrap over sessions and seeds): where it excludes 0, the difference would likely hold on new "
             "sessions, and it alone decides whether a method beats the best fixed hint. Other columns are means "
             "over seeds; HR@1 is left out because with one target item it equals NDCG@1. "
             "Gap closed = (NDCG@10 - best fixed) / (oracle - best fixed). The oracle picks each test session's "
             "best hint with the answer known: an upper bound, not a policy.", ""]
    for env in config.envs:
        keys = [k for k in summary if k[0] == env.label]
        order = {m: i for i, m in enumerate(["oracle (upper bound)", *[a.upper() for a in config.algos],
                                              *[run.label for run in env.hint_sets], "LinUCB",
                                              "best fixed hint", "random hint", "no hint"])}
        keys.sort(key=lambda k: order.get(k[1], 99))
        fixed = summary.get((env.label, "best fixed hint"), {}).get("mean")
        oracle = summary.get((env.label, "oracle (upper bound)"), {}).get("mean")
        kwargs = ", ".join(f"{k}={v}" for k, v in env.kwargs.items()) or "defaults"
        n_test = next((r["n_test_sessions"] for r in rows if r["env"] == env.label), 0)
        lines += [f"## {env.label}", "", f"`{env.id}` ({kwargs}); {n_test} test sessions.", "",
                  "| method | runs | NDCG@10 mean [95% CI] | NDCG@10 IQM [95% CI] | vs best fixed [95% CI] | HR@5 | HR@10 "
                  "| NDCG@1 | NDCG@5 | mean reward | beats no hint | gap closed |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key in keys:
            s = summary[key]
            gap = _gap_closed(s["mean"], fixed, oracle)
            gain = gains.get(key)
            versus = "" if gain is None else f"{gain[0]:+.3f} [{gain[1]:+.3f}, {gain[2]:+.3f}]"
            lines.append(f"| {key[1]} | {s['n_runs']} | {_fmt(s, 'mean')} | {_fmt(s, 'iqm')} | {versus} | {s['mean_HR@5']:.3f} | "
                         f"{s['mean_HR@10']:.3f} | {s['mean_NDCG@1']:.3f} | "
                         f"{s['mean_NDCG@5']:.3f} | {s['mean_mean_reward']:+.3f} | {s['mean_beats_no_hint']:.3f} | "
                         f"{'' if gap is None else _share(gap, '.2f')} |")
        lines += ["", _target_sentence(env, summary, config, gains), ""]
    return "\n".join(lines) + "\n"


def _target_sentence(env: EnvConfig, summary: dict, config: BenchmarkConfig,
                     gains: dict[tuple[str, str], tuple[float, float, float]]) -> str:
    rl = [(summary[(env.label, a.upper())], a.upper()) for a in config.algos if (env.label, a.upper()) in summary]
    fixed = summary.get((env.label, "best fixed hint"))
    oracle = summary.get((env.label, "oracle (upper bound)"))
    if not rl or fixed is None or oracle is None:
        return ""
    best, name = max(rl, key=lambda t: t[0]["mean"])
    gap = _gap_closed(best["mean"], fixed["mean"], oracle["mean"])
    closed = "nan%" if gap is None else _share(gap, ".0%")
    sentence = (f"Best RL algorithm: **{name}**, test NDCG@10 {best['mean']:.3f} vs best fixed hint {fixed['mean']:.3f}, "
                f"closing {closed} of the gap to the oracle ({oracle['mean']:.3f}).")
    gain = gains.get((env.label, name))
    if gain is None:
        return sentence + " No per-session test ranks were recorded, so no paired comparison with the best fixed hint."
    difference, low, high = gain
    if low > 0:
        verdict = "it beats the best fixed hint"
    elif high < 0:
        verdict = "it is worse than the best fixed hint"
    else:
        verdict = "it does not beat the best fixed hint (the interval includes 0)"
    return sentence + (f" Paired over test sessions and seeds, its difference from the best fixed hint is "
                       f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]: {verdict}.")


def _band(values: np.ndarray, reps: int) -> tuple[float, float, float]:
    """Mean over seeds of one val point, with its stratified-bootstrap interval (``values`` is ``(n_seeds,)``)."""
    lo, hi = stratified_bootstrap_ci(values, aggregate=mean, reps=min(reps, 500))
    return float(np.mean(values)), lo, hi


def _env_order(present: set[str], order: list[str] | None) -> list[str]:
    return [e for e in (order or []) if e in present] + sorted(present - set(order or []))


# Baseline lines in the learning-curve plot: one style each, named in the shared legend.
BASELINE_STYLES = {"oracle (upper bound)": {"color": "black", "linestyle": "--"},
                   "LinUCB": {"color": "tab:purple", "linestyle": "-."},
                   "best fixed hint": {"color": "tab:gray", "linestyle": "--"},
                   "random hint": {"color": "tab:gray", "linestyle": ":"},
                   "no hint": {"color": "darkgray", "linestyle": "-"}}


def _panels(n: int, width: float, height: float):
    """pyplot, and a figure with ``n`` panels, two per row, with its axes in reading order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(2, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat[:n])


def plot_learning_curves(results: list[dict[str, Any]], path: Path, reps: int = BOOTSTRAP_REPS,
                         order: list[str] | None = None) -> None:
    """Val NDCG@10 against env steps per env: each algorithm's mean over seeds with a 95% bootstrap band,
    each baseline as a horizontal line; one legend for all panels."""
    from rliable import plot_utils

    envs = _env_order({r["row"]["env"] for r in results}, order)
    algos = sorted({r["row"]["method"] for r in results if r["row"]["kind"] == "rl"})
    colors = {method: f"C{k}" for k, method in enumerate(algos)}
    plt, fig, axes = _panels(len(envs), 6.0, 4.0)
    handles: dict[str, Any] = {}
    for ax, env in zip(axes, envs):
        mine = [r for r in results if r["row"]["env"] == env]
        for method in algos:
            curves = [r["curve"] for r in mine if r["row"]["method"] == method]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = np.array([s for s, _ in curves[0][:n]])
            values = np.array([[v for _, v in c[:n]] for c in curves])
            stats = np.array([_band(values[:, t], reps) for t in range(n)])
            plot_utils.plot_sample_efficiency_curve(steps, {method: stats[:, 0]}, {method: stats[:, 1:].T},
                                                    algorithms=[method], colors=colors, ax=ax, xlabel="env steps",
                                                    ylabel="val NDCG@10", labelsize="medium", ticklabelsize="small",
                                                    marker="", linewidth=1.8)
            handles[method] = ax.lines[-1]
        for method, style in BASELINE_STYLES.items():
            values = [r["curve"][0][1] for r in mine if r["row"]["method"] == method]
            if values:
                handles[method] = ax.axhline(float(np.mean(values)), linewidth=1.2, **style)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("val NDCG@10")
        ax.grid(alpha=0.3)
    labels = [m for m in [*algos, *BASELINE_STYLES] if m in handles]
    fig.legend([handles[m] for m in labels], labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=9)
    fig.suptitle("Validation NDCG@10 during training\n(mean over seeds, 95% bootstrap CI; baselines as lines)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


COMPARISON_COLORS = {"rl": "tab:blue", "baseline": "tab:gray"}
COMPARISON_LEGEND = {"rl": "RL algorithm", "baseline": "baseline"}


def plot_comparison(summary: dict, path: Path, order: list[str] | None = None) -> Any:
    """Test NDCG@10 per env: the mean over seeds with its 95% CI (the tables' headline column), RL
    algorithms and baselines in two colours named in a legend. Returns the (closed) figure."""
    from matplotlib.patches import Patch

    envs = _env_order({env for env, _ in summary}, order)
    plt, fig, axes = _panels(len(envs), 6.0, 0.45 * 9 + 1.2)
    for ax, env in zip(axes, envs):
        keys = sorted((k for k in summary if k[0] == env), key=lambda k: summary[k]["mean"])
        y = np.arange(len(keys))
        means = np.array([summary[k]["mean"] for k in keys])
        err = np.array([[summary[k]["mean"] - summary[k]["mean_lo"], summary[k]["mean_hi"] - summary[k]["mean"]]
                        for k in keys]).T
        ax.barh(y, means, xerr=err, color=[COMPARISON_COLORS[summary[k]["kind"]] for k in keys], capsize=3)
        for yi, value, key in zip(y, means, keys):
            ax.annotate(f"{value:.3f}", (summary[key]["mean_hi"], yi), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize=8)
        ax.set_xlim(0, 1.18 * float(means.max()) if means.max() > 0 else 1.0)  # room for the value labels
        ax.set_yticks(y, [k[1] for k in keys])
        ax.set_xlabel("test NDCG@10 (mean over seeds, 95% CI)")
        ax.set_title(env)
    kinds = [kind for kind in COMPARISON_COLORS if any(s["kind"] == kind for s in summary.values())]
    fig.legend([Patch(color=COMPARISON_COLORS[kind]) for kind in kinds], [COMPARISON_LEGEND[kind] for kind in kinds],
               loc="outside lower center", ncols=len(kinds), fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def _write_command(config: BenchmarkConfig, out: Path, seconds: float) -> None:
    import gymnasium
    import stable_baselines3
    import torch

    # `rec-gym ...` and `python -m rec_gym.cli ...` run the same thing; other callers are recorded as they are.
    script = Path(sys.argv[0]) if sys.argv else Path()
    via_cli = script.name == "rec-gym" or script.parts[-2:] == ("cli", "__main__.py")
    command = ("rec-gym " if via_cli else "") + " ".join(shlex.quote(a) for a in (sys.argv[1:] if via_cli else sys.argv))
    text = [f"# command\n{command}\n",
            f"# wall time\n{seconds:.0f} s with {config.workers} worker(s)\n",
            f"# machine\n{platform.platform()}, {os.cpu_count()} CPUs ({_cpu_name() or 'model unknown'}), "
            f"python {platform.python_version()}, torch {torch.__version__}, stable-baselines3 "
            f"{stable_baselines3.__version__}, gymnasium {gymnasium.__version__}, numpy {np.__version__}\n"]
    if config.path is not None and config.path.exists():
        text.append(f"# config ({config.path})\n{config.path.read_text(encoding='utf-8')}")
    (out / "command.txt").write_text("\n".join(text), encoding="utf-8")
