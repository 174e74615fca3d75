"""Train a Stable-Baselines3 retrieval policy on a Re2LLM env, with rl-baselines3-zoo hyperparameter files.

:func:`train` takes PPO, A2C and DQN on the one-hint ids, sb3-contrib's MaskablePPO (or PPO) on the
composition ids and one PPO policy shared by the agents of ``hint_team_v0``
(:mod:`rec_gym.agents.hint_sets` builds those envs); every run is saved and loaded the same way.

Hyperparameters ship with the package in ``rec_gym/agents/hyperparams/<algo>.yml`` (:data:`HYPERPARAMS_DIR`),
keyed by env id, in the zoo's layout (the same files work with ``python -m rl_zoo3.train --conf-file ...``)::

    Re2LLM-Synthetic-v0:
      n_envs: 8
      n_timesteps: !!float 1.5e5
      policy: 'rec_gym.agents.features.SquaredFeaturesPolicy'
      gamma: 0.0
      learning_rate: !!float 1e-3
      policy_kwargs: "dict(net_arch=[128, 128])"
      normalize: "dict(norm_obs=True, norm_reward=False)"

``n_envs``, ``n_timesteps``, ``policy`` (``'MlpPolicy'`` or a dotted path to a policy class, e.g.
``'rec_gym.agents.features.SquaredFeaturesPolicy'``), ``normalize`` and ``env_kwargs`` are read
here; every other key goes to the algorithm's constructor. ``policy_kwargs`` and ``normalize`` may be Python
expressions in a string (``dict``, ``nn`` in scope), and ``lin_<x>`` makes ``learning_rate`` or
``clip_range`` decay linearly from ``x`` to 0, as in the zoo.

A trained run is a folder with the same files whatever the algorithm and env: ``model.zip`` (SB3),
``config.json`` (algo, env id, env kwargs, seed, hyperparameters, timesteps, versions, which policy
was kept (``keep``: the final one, or the val-best point of the curve) and under ``val`` the kept
policy's val NDCG@10, no hint's, the mean number of hints per prompt and the distinct LLM calls the
run cost), ``normalization.json`` (the observation mean and variance when
``normalize`` is set, else ``{"normalized": false}``), ``val_curve.csv`` (val NDCG@10 against
timesteps: at the start, every ``val_every`` steps and at the end) and TensorBoard logs under ``tb/``
(:data:`RUN_FILES`).

A run folder from someone else is safe to evaluate (:func:`load_run`): nothing in it is unpickled,
evaluated as code or imported, and it cannot make rec_gym contact a host, read an environment variable
or write a file. The network weights load with ``torch.load(weights_only=True)``; every entry that SB3
stores as a pickle inside ``model.zip`` (spaces, policy class, schedules) is rebuilt from
``config.json`` and the env instead of being read; the expressions in the hyperparameters are parsed
as literals, ``dict(...)`` and ``nn.<Module>`` only; the env id must be one this package registers and
the policy one of :data:`RECEIVED_POLICIES`, both checked before anything is made or imported. The
env arguments that reach outside the process (:data:`LOCAL_ONLY_KWARGS`: the LLM and its arguments,
the feedback table and data paths, a dataset folder, a knowledge-base file, a downloaded encoder) are
never taken from the folder: the caller passes them. Sizes are checked before anything is allocated
(:func:`check_received_sizes`): ``config.json`` at most :data:`MAX_CONFIG_BYTES`, every member of
``model.zip`` at most :data:`MAX_ZIP_MEMBER_BYTES` (its ``data`` entry :data:`MAX_ZIP_DATA_BYTES`), the
policy at most :data:`MAX_POLICY_PARAMETERS` parameters and its rollout or replay storage at most
:data:`MAX_BUFFER_VALUES` numbers.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from rec_gym.agents.evaluation import EvaluationResult, evaluate
from rec_gym.agents.hint_sets import is_hint_set_env
from rec_gym.agents.tasks import make_env
from rec_gym.metrics import ndcg_at_k
from rec_gym.storage import check_zip_sizes, read_limited, read_zip_member

ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo")
# Which policy a run keeps: the last one, or the one of highest val NDCG@10 on its val curve (train's ``keep``).
KEEP = ("final", "best_val")
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
# The policies a received run may name: SB3's aliases and this package's own classes. A run folder
# naming anything else is refused before any import.
RECEIVED_POLICIES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy", "rec_gym.agents.features.SquaredFeaturesPolicy",
                     "rec_gym.agents.features.SquaredFeaturesDQNPolicy", "rec_gym.agents.features.TextChoicePolicy")
# Env arguments that reach outside the process (an LLM server or model download, environment variables
# named in llm_kwargs, files to read or write): a received run's config.json never chooses them.
LOCAL_ONLY_KWARGS = ("llm", "llm_kwargs", "feedback_table", "data_dir", "writer", "writer_kwargs", "recommender")
CONFIG_NAME = "config.json"
MODEL_NAME = "model.zip"
NORMALIZATION_NAME = "normalization.json"
VAL_CURVE_NAME = "val_curve.csv"
TENSORBOARD_NAME = "tb"
# What every `rec-gym train` run folder holds, whatever the algorithm and env.
RUN_FILES = (CONFIG_NAME, MODEL_NAME, NORMALIZATION_NAME, VAL_CURVE_NAME, TENSORBOARD_NAME)

# What a received run may make this process read or allocate. A run trained here is far below each:
# a 128x128 policy has about 20k parameters and a PPO rollout a few hundred thousand numbers.
MAX_CONFIG_BYTES = 1 << 20
MAX_ZIP_MEMBER_BYTES = 256 << 20
MAX_ZIP_TOTAL_BYTES = 512 << 20
MAX_ZIP_DATA_BYTES = 16 << 20
MAX_POLICY_PARAMETERS = 50_000_000  # 200 MB of float32 weights per network
MAX_BUFFER_VALUES = 250_000_000  # 1 GB of float32 rollout or replay storage


def algo_class(algo: str) -> type:
    import stable_baselines3 as sb3

    if algo.lower() == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    classes = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}
    try:
        return classes[algo.lower()]
    except KeyError:
        raise ValueError(f"algo={algo!r} is not one of {ALGOS}") from None


def check_algo(algo: str, env_id: str) -> None:
    """Raise ``ValueError`` unless ``algo`` trains on ``env_id``: PPO, A2C or DQN on a one-hint id,
    MaskablePPO or PPO on a composition id, PPO on ``hint_team_v0``."""
    from rec_gym.agents.hint_sets import COMPOSE_ALGOS, TEAM_ENV, is_hint_set_env

    algo = algo.lower()
    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r} is not one of {ALGOS}")
    if env_id == TEAM_ENV:
        if algo != "ppo":
            raise ValueError(f"algo={algo!r}: hint_team_v0 trains with --algo ppo (one policy shared by the agents)")
    elif is_hint_set_env(env_id):
        if algo not in COMPOSE_ALGOS:
            raise ValueError(f"algo={algo!r} is not one of {COMPOSE_ALGOS}, the algorithms of the composition envs")
    elif algo == "maskable_ppo":
        raise ValueError(f"algo='maskable_ppo' needs a Re2LLMCompose-* id (action masks), not {env_id!r}")


def hyperparams_path(algo: str, directory: str | os.PathLike | None = None) -> Path:
    return Path(directory or HYPERPARAMS_DIR) / f"{algo.lower()}.yml"


def load_hyperparams(algo: str, env_id: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The raw (zoo-format) hyperparameters of ``algo`` for ``env_id`` from ``path`` (default: the shipped ``<algo>.yml``)."""
    if path is None and algo.lower() not in ALGOS:
        raise ValueError(f"algo={algo!r} is not one of {ALGOS}")
    path = Path(path) if path is not None else hyperparams_path(algo)
    if not path.is_file():
        raise FileNotFoundError(f"hyperparameter file {path} does not exist; pass --hyperparams FILE "
                                f"(rl-baselines3-zoo layout, keyed by env id)")
    with open(path, encoding="utf-8") as fh:
        table = yaml.safe_load(fh) or {}
    if env_id not in table:
        raise KeyError(f"{path} has no entry for {env_id!r} (it has {sorted(table)}); add one keyed by the env id")
    return dict(table[env_id])


def _parse_expression(text: str, what: str) -> Any:
    """The value of a zoo-style expression such as ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``.

    Only literals (numbers, strings, booleans, ``None``, lists, tuples, dicts), ``dict(key=value, ...)``
    and torch module classes ``nn.<Name>`` are accepted; nothing is ``eval``-ed, so a hyperparameter
    file or a run's ``config.json`` from someone else cannot run code.
    """
    import ast

    from torch import nn

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = value(node.operand)
            if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
            return {value(key): value(item) for key, item in zip(node.keys, node.values)}
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args
                and all(keyword.arg is not None for keyword in node.keywords)):
            return {keyword.arg: value(keyword.value) for keyword in node.keywords}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nn":
            module_class = getattr(nn, node.attr, None)
            if isinstance(module_class, type) and issubclass(module_class, nn.Module):
                return module_class
        raise ValueError(f"{ast.unparse(node)!r} is not allowed")

    try:
        return value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, RecursionError) as exc:
        shown = text if len(text) <= 200 else text[:200] + "..."
        raise ValueError(f"{what}={shown!r} is not a valid expression ({exc}); write literals, dict(...) and nn.<Module> "
                         "only, e.g. \"dict(net_arch=[64, 64], activation_fn=nn.ReLU)\"") from None


def _import_class(dotted: str) -> type:
    import importlib

    from stable_baselines3.common.policies import BasePolicy

    module, _, name = dotted.rpartition(".")
    try:
        policy = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"policy={dotted!r} cannot be imported ({exc}); use 'MlpPolicy' or a dotted path to a policy class") from None
    if not (isinstance(policy, type) and issubclass(policy, BasePolicy)):
        raise ValueError(f"policy={dotted!r} is not a Stable-Baselines3 policy class (a subclass of BasePolicy)")
    return policy


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


@dataclass
class Hyperparams:
    """Zoo hyperparameters split into what the trainer uses and what the algorithm's constructor takes."""

    n_envs: int
    n_timesteps: int
    policy: "str | type"
    normalize: dict[str, Any] | None
    env_kwargs: dict[str, Any]
    algo_kwargs: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: dict[str, Any], received: bool = False) -> "Hyperparams":
        """Split ``raw``; ``received=True`` (a run folder from elsewhere) allows only :data:`RECEIVED_POLICIES`."""
        params = dict(raw)
        n_envs = int(params.pop("n_envs", 1))
        n_timesteps = int(float(params.pop("n_timesteps", 0)))
        policy = params.pop("policy", "MlpPolicy")
        if received and policy not in RECEIVED_POLICIES:
            raise ValueError(f"policy={policy!r} is not allowed in a received run; a run folder may name only "
                             f"{', '.join(RECEIVED_POLICIES)}")
        if isinstance(policy, str) and "." in policy:
            policy = _import_class(policy)
        normalize = params.pop("normalize", False)
        if isinstance(normalize, str):
            normalize = _parse_expression(normalize, "normalize")
        normalize = (dict(normalize) if isinstance(normalize, dict) else {}) if normalize else None
        env_kwargs = dict(params.pop("env_kwargs", None) or {})
        for key in ("policy_kwargs", "replay_buffer_kwargs"):
            if isinstance(params.get(key), str):
                params[key] = _parse_expression(params[key], key)
        for key in ("learning_rate", "clip_range"):
            if key in params:
                params[key] = _schedule(params[key])
        if "train_freq" in params and isinstance(params["train_freq"], list):
            params["train_freq"] = tuple(params["train_freq"])
        return cls(n_envs, n_timesteps, policy, normalize, env_kwargs, params, dict(raw))


class ValidationCurve:
    """Val NDCG@10 of a model's deterministic policy against env steps; ``score(model)`` evaluates it on val.

    With ``snapshot``, each measurement that beats every earlier one also keeps ``snapshot(model)``
    (the policy's weights and observation statistics at that point) as :attr:`best_state`.
    """

    def __init__(self, score: Callable[[Any], EvaluationResult], snapshot: Callable[[Any], Any] | None = None) -> None:
        self.score = score
        self.snapshot = snapshot
        self.steps: list[int] = []
        self.ndcg: list[float] = []
        self.last: EvaluationResult | None = None
        self.best: EvaluationResult | None = None
        self.best_step: int | None = None
        self.best_state: Any = None

    def measure(self, model: Any, step: int) -> float:
        self.last = self.score(model)
        self.steps.append(int(step))
        self.ndcg.append(float(self.last["NDCG@10"]))
        # Ties keep the earlier point: a later one is no better on val and has had more chance to overfit train.
        if self.best is None or self.ndcg[-1] > float(self.best["NDCG@10"]):
            self.best, self.best_step = self.last, int(step)
            if self.snapshot is not None:
                self.best_state = self.snapshot(model)
        return self.ndcg[-1]


def validation_callback(curve: ValidationCurve, every: int | None):
    """An SB3 callback that measures ``curve`` at the start, every ``every`` env steps (``None``: never), and at the end."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ValidationCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_at = 0

        def _measure(self) -> None:
            value = curve.measure(self.model, self.num_timesteps)
            self.logger.record("val/NDCG@10", value)
            # Written now: SB3 dumps only every log_interval rollouts, which would drop most val points.
            self.logger.dump(self.num_timesteps)

        def _on_training_start(self) -> None:
            self._measure()
            self.next_at = self.num_timesteps + every if every else None
            self.total = self.locals["total_timesteps"]

        def _on_step(self) -> bool:
            # The last point is left to _on_training_end: the model still learns from the last rollout.
            if self.next_at is not None and self.next_at <= self.num_timesteps < self.total:
                self._measure()
                self.next_at += every * max(1, (self.num_timesteps - self.next_at) // every + 1)
            return True

        def _on_training_end(self) -> None:
            if not curve.steps or curve.steps[-1] != self.num_timesteps:
                self._measure()

    return ValidationCallback()


@dataclass
class ObservationNormalizer:
    """The observation statistics of SB3's ``VecNormalize`` at the end of training, frozen."""

    mean: np.ndarray
    var: np.ndarray
    clip_obs: float = 10.0
    epsilon: float = 1e-8

    @classmethod
    def from_vec_normalize(cls, venv: Any) -> "ObservationNormalizer":
        return cls(np.array(venv.obs_rms.mean, dtype=np.float64), np.array(venv.obs_rms.var, dtype=np.float64),
                   float(venv.clip_obs), float(venv.epsilon))

    def normalize_obs(self, observation: np.ndarray) -> np.ndarray:
        """What ``VecNormalize.normalize_obs`` computes: standardise, then clip to ``[-clip_obs, clip_obs]``."""
        scaled = (np.asarray(observation, dtype=np.float64) - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    @staticmethod
    def save(normalizer: "ObservationNormalizer | None", path: Path) -> None:
        """Write ``normalizer``'s statistics to ``path``, or ``{"normalized": false}`` for a run without normalisation."""
        payload: dict[str, Any] = {"normalized": False}
        if normalizer is not None:
            payload = {"normalized": True, "mean": normalizer.mean.tolist(), "var": normalizer.var.tolist(),
                       "clip_obs": normalizer.clip_obs, "epsilon": normalizer.epsilon}
        path.write_text(json.dumps(payload) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path, dim: int) -> "ObservationNormalizer | None":
        """The statistics in ``path`` for ``dim``-dimensional observations; ``None`` when it says the run did not normalise."""
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(payload, dict) and payload.get("normalized") is False:
                return None
            normalizer = cls(np.asarray(payload["mean"], dtype=np.float64), np.asarray(payload["var"], dtype=np.float64),
                             float(payload["clip_obs"]), float(payload["epsilon"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a normalization file written by `rec-gym train` ({exc!r})") from None
        if normalizer.mean.shape != (dim,) or normalizer.var.shape != (dim,):
            raise ValueError(f"{path}: mean/var have shapes {normalizer.mean.shape}/{normalizer.var.shape}, but the "
                             f"env's observations have {dim} dimensions; was it saved for another env or observation?")
        return normalizer


class NormalizedPolicy:
    """An SB3 model behind the observation normalisation it was trained with."""

    def __init__(self, model: Any, normalizer: ObservationNormalizer) -> None:
        self.model, self.normalizer = model, normalizer

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray | int, Any]:
        obs = self.normalizer.normalize_obs(np.asarray(observation, dtype=np.float32))
        return self.model.predict(obs, state, episode_start, deterministic)


@dataclass
class TrainResult:
    model: Any
    policy: Any
    config: dict[str, Any]
    curve: ValidationCurve
    out_dir: Path | None


def train(algo: str, env_id: str, env_kwargs: dict[str, Any] | None = None, seed: int = 0,
          timesteps: int | None = None, out_dir: str | os.PathLike | None = None,
          hyperparams: dict[str, Any] | None = None, hyperparams_file: str | os.PathLike | None = None,
          val_every: int | None = None, progress_bar: bool = False, tensorboard: bool = True,
          verbose: int = 0, device: str = "cpu", keep: str = "final") -> TrainResult:
    """Train ``algo`` on the train split of ``env_id`` and (with ``out_dir``) save the run folder.

    Args:
        algo: ``"ppo"``, ``"a2c"`` or ``"dqn"`` on a one-hint id; ``"maskable_ppo"`` or ``"ppo"`` on a
            ``Re2LLMCompose-*`` id; ``"ppo"`` on ``"hint_team_v0"`` (:func:`check_algo`).
        env_id: a registered Re2LLM id or ``"hint_team_v0"``; ``env_kwargs`` go to the env (never ``split``).
        seed: seed of the algorithm, the envs' resets and the network initialisation.
        timesteps: env steps; default the file's ``n_timesteps``.
        hyperparams: zoo-format hyperparameters; default read from ``hyperparams_file`` /
            the shipped ``rec_gym/agents/hyperparams/<algo>.yml``.
        val_every: also measure val NDCG@10 every so many env steps (it is always measured at the
            start and the end).
        keep: which policy the run returns and saves (:data:`KEEP`): ``"final"``, the policy at the
            end of training; ``"best_val"``, the policy (weights and observation statistics) at the
            point of the val curve with the highest val NDCG@10: early stopping on the val split,
            which guards a one-step bandit against fitting the per-session noise of a few train
            sessions. ``config.json`` records it under ``keep`` with the step it was taken at, and
            its val scores under ``val``.
    """
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecNormalize

    from rec_gym.agents.hint_sets import TEAM_ENV, known_entries
    from rec_gym.envs.arguments import check_env_id

    check_env_id(env_id, also=(TEAM_ENV,))
    check_algo(algo, env_id)
    if keep not in KEEP:
        raise ValueError(f"keep={keep!r} is not one of {KEEP}")
    raw = dict(hyperparams) if hyperparams is not None else load_hyperparams(algo, env_id, hyperparams_file)
    hp = Hyperparams.parse(raw)
    env_kwargs = {**hp.env_kwargs, **(env_kwargs or {})}
    if timesteps is not None and int(timesteps) < 1:
        raise ValueError(f"timesteps={timesteps} must be >= 1 (leave it out to train the hyperparameters' n_timesteps)")
    n_timesteps = int(timesteps) if timesteps is not None else hp.n_timesteps
    if n_timesteps <= 0:
        raise ValueError(f"no timesteps: pass timesteps or set n_timesteps for {env_id!r} in the {algo} hyperparameters")
    if hp.normalize is not None and is_hint_set_env(env_id):
        raise ValueError(f"normalize is not supported for {algo} on {env_id}; remove it from the hyperparameters")
    out = Path(out_dir) if out_dir is not None else None
    set_random_seed(seed)
    started = time.time()
    # A feedback_table path names the train split's table; the val split keeps its own default one.
    val_env = make_run_env(env_id, "val", {k: v for k, v in env_kwargs.items() if k != "feedback_table"})
    raw = _with_text_dim(hp, raw, val_env, env_id)
    tables = [_table_path(val_env)]
    train_env = make_run_env(env_id, "train", env_kwargs)
    tables.append(_table_path(train_env))
    train_env.close()
    known_before = sum(known_entries(path) for path in set(tables) if path is not None)
    venv = train_vec_env(env_id, env_kwargs, hp.n_envs, seed)
    if hp.normalize is not None:
        venv = VecNormalize(venv, **{"norm_reward": False, **hp.normalize})
    model = algo_class(algo)(hp.policy, venv, seed=seed, verbose=verbose, device=device,
                             tensorboard_log=str(out / TENSORBOARD_NAME) if (out is not None and tensorboard) else None,
                             **hp.algo_kwargs)
    def snapshot(m: Any) -> tuple[dict[str, Any], ObservationNormalizer | None]:
        weights = {name: tensor.detach().clone() for name, tensor in m.policy.state_dict().items()}
        return weights, (ObservationNormalizer.from_vec_normalize(venv) if hp.normalize is not None else None)

    curve = ValidationCurve(lambda m: evaluate_policy(NormalizedPolicy(m, venv) if hp.normalize is not None else m,
                                                      env_id, val_env), snapshot if keep == "best_val" else None)
    model.learn(total_timesteps=n_timesteps, callback=validation_callback(curve, val_every), progress_bar=progress_bar,
                tb_log_name=f"{algo}-s{seed}")
    normalizer = ObservationNormalizer.from_vec_normalize(venv) if hp.normalize is not None else None
    kept, kept_step = curve.last, curve.steps[-1]
    if keep == "best_val":
        weights, normalizer = curve.best_state
        model.policy.load_state_dict(weights)
        kept, kept_step = curve.best, curve.best_step
    policy = model if normalizer is None else NormalizedPolicy(model, normalizer)
    venv.close()
    val_env.close()
    config = make_config(algo, env_id, env_kwargs, seed, raw, n_timesteps, time.time() - started)
    config["keep"] = {"policy": keep, "timesteps": int(kept_step)}
    calls = sum(known_entries(path) for path in set(tables) if path is not None) - known_before
    config["val"] = val_report(kept, calls)
    if out is not None:
        save_run(out, model, config, normalizer, curve)
    return TrainResult(model, policy, config, curve, out)


def _with_text_dim(hp: Hyperparams, raw: dict[str, Any], env: Any, env_id: str) -> dict[str, Any]:
    """For :class:`~rec_gym.agents.features.TextChoicePolicy`, ``policy_kwargs["text_dim"]`` from the env when
    not given (in ``hp`` and in the ``raw`` hyperparameters the run saves, so that loading rebuilds it)."""
    from rec_gym.agents.features import TextChoicePolicy

    if not (isinstance(hp.policy, type) and issubclass(hp.policy, TextChoicePolicy)):
        return raw
    kwargs = dict(hp.algo_kwargs.get("policy_kwargs") or {})
    if "text_dim" in kwargs:
        return raw
    text_dim = getattr(env.unwrapped.task, "text_dim", None)
    if text_dim is None:
        raise ValueError(f"policy TextChoicePolicy chooses among preference texts, and {env_id} offers none; use it "
                         "with the RLRF4Rec-* ids, or pass policy_kwargs text_dim")
    kwargs["text_dim"] = int(text_dim)
    hp.algo_kwargs["policy_kwargs"] = kwargs
    return {**raw, "policy_kwargs": kwargs}


def val_report(result: EvaluationResult, llm_calls: int) -> dict[str, Any]:
    """What ``config.json`` keeps under ``val``: the final policy's and no hint's val NDCG@10, the mean
    number of hints per prompt, and the distinct LLM calls the run cost."""
    n_hints = result.extra.get("n_hints", result.actions != 0)
    return {"val_ndcg10": float(result["NDCG@10"]), "val_no_hint_ndcg10": float(ndcg_at_k(result.baseline_ranks, 10).mean()),
            "val_mean_hints": float(np.mean(n_hints)), "llm_calls": int(llm_calls)}


def _table_path(env: Any) -> Path | None:
    """The feedback table file of ``env``'s split; ``None`` when it has none on disk (RLRF4Rec ids keep no table)."""
    table = getattr(env.unwrapped.task, "table", None)
    return None if table is None else table.path


def make_run_env(env_id: str, split: str, env_kwargs: dict[str, Any] | None = None) -> Any:
    """The env a policy of ``env_id`` is scored on: ``gym.make`` of the id, or the team with its agent indicator."""
    if is_hint_set_env(env_id):
        from rec_gym.agents.hint_sets import make_hint_set_env

        return make_hint_set_env(env_id, split, env_kwargs)
    return make_env(env_id, split, env_kwargs)


def train_vec_env(env_id: str, env_kwargs: dict[str, Any], n_envs: int, seed: int) -> Any:
    """SB3's vector env of ``n_envs`` train-split copies of ``env_id``, seeded with ``seed``."""
    if is_hint_set_env(env_id):
        from rec_gym.agents.hint_sets import hint_set_vec_env

        return hint_set_vec_env(env_id, env_kwargs, n_envs, seed)
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(lambda: make_env(env_id, "train", env_kwargs), n_envs=n_envs, seed=seed)


def evaluate_policy(policy: Any, env_id: str, env: Any, max_sessions: int | None = None) -> EvaluationResult:
    """Score ``policy`` on every session of ``env`` (made by :func:`make_run_env` for ``env_id``): the same
    metrics for one hint (:func:`~rec_gym.agents.evaluate`) and several (:func:`~rec_gym.agents.hint_sets.evaluate_hint_sets`)."""
    if is_hint_set_env(env_id):
        from rec_gym.agents.hint_sets import evaluate_hint_sets

        return evaluate_hint_sets(policy, env, max_sessions, env_id)
    return evaluate(policy, env, split=env.unwrapped.task.split, max_sessions=max_sessions)


def make_config(algo: str, env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any],
                timesteps: int, train_seconds: float) -> dict[str, Any]:
    import gymnasium
    import stable_baselines3
    import torch

    import rec_gym

    return {"algo": algo.lower(), "env_id": env_id, "env_kwargs": env_kwargs, "seed": int(seed),
            "hyperparams": hyperparams, "timesteps": int(timesteps), "train_seconds": round(train_seconds, 2),
            "versions": {"rec_gym": rec_gym.__version__, "stable_baselines3": stable_baselines3.__version__,
                         "gymnasium": gymnasium.__version__, "torch": torch.__version__}}


def save_run(out: Path, model: Any, config: dict[str, Any], normalizer: ObservationNormalizer | None,
             curve: ValidationCurve) -> Path:
    """Write the run folder's files (:data:`RUN_FILES`; TensorBoard writes its own during training)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_NAME)
    ObservationNormalizer.save(normalizer, out / NORMALIZATION_NAME)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    with open(out / VAL_CURVE_NAME, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timesteps", "val_ndcg10"])
        writer.writerows(zip(curve.steps, curve.ndcg))
    return out / MODEL_NAME


def load_run(path: str | os.PathLike, env_kwargs: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """``(policy, config)`` of a run folder or of its ``model.zip`` (the policy includes its normalisation).

    The folder may come from anyone (see the module docstring): ``env_kwargs`` supplies the
    :data:`LOCAL_ONLY_KWARGS` and any dataset folder, knowledge-base file or downloaded encoder the run
    needs, and overrides the config's other env arguments. The returned config's ``env_kwargs`` are the
    ones the policy was loaded with.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass a run folder written by `rec-gym train` or its {MODEL_NAME}")
    folder = path if path.is_dir() else path.parent
    model_path = path if path.is_file() else folder / MODEL_NAME
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist: a model saved by `rec-gym train` has its {CONFIG_NAME} beside it")
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} does not exist: the run folder has no {MODEL_NAME}")
    fix = "a run folder written by `rec-gym train` is far smaller: this one is damaged or not a rec_gym run"
    try:
        config = json.loads(read_limited(config_path, MAX_CONFIG_BYTES, fix).decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{config_path}: not a JSON file written by `rec-gym train` ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path}: not a JSON file written by `rec-gym train` ({exc})") from None
    config = received_config(config, config_path, env_kwargs or {})
    hp = Hyperparams.parse(config["hyperparams"], received=True)
    check_zip_sizes(model_path, MAX_ZIP_MEMBER_BYTES, MAX_ZIP_TOTAL_BYTES)
    env = make_run_env(config["env_id"], "train", config["env_kwargs"])
    try:
        observation_space, action_space = _spaces(env)
        check_received_sizes(hp, observation_space, action_space, config_path)
        model = load_model(model_path, config, observation_space, action_space, hp)
    finally:
        env.close()
    norm_path = folder / NORMALIZATION_NAME
    if norm_path.exists():
        normalizer = ObservationNormalizer.load(norm_path, int(observation_space.shape[0]))
        return (model if normalizer is None else NormalizedPolicy(model, normalizer)), config
    if hp.normalize is not None:
        raise FileNotFoundError(f"{norm_path} not found: the run was trained with normalize="
                                f"{config['hyperparams']['normalize']!r}, so its policy needs those statistics")
    return model, config


def _hidden_layers(net_arch: Any, where: str) -> list[list[int]]:
    """The hidden-layer widths of each network ``net_arch`` describes (SB3's list, ``dict(pi=, vf=, qf=)``
    or the older list ending in such a dict), every width checked to be a positive int."""
    def widths(value: Any) -> list[int]:
        if not isinstance(value, (list, tuple)) or not all(type(w) is int and w > 0 for w in value):
            raise ValueError(f"{where}: net_arch={net_arch!r} must be a list of positive ints or a dict of such lists")
        return list(value)

    if net_arch is None:
        return [[64, 64]]  # SB3's default MLP
    if isinstance(net_arch, dict):
        return [widths(v) for v in net_arch.values()]
    if isinstance(net_arch, (list, tuple)) and net_arch and isinstance(net_arch[-1], dict):
        shared = widths(net_arch[:-1])
        return [shared + widths(v) for v in net_arch[-1].values()]
    return [widths(net_arch)]


def check_received_sizes(hp: Hyperparams, observation_space: Any, action_space: Any, where: str | os.PathLike) -> None:
    """Refuse (``ValueError``, one line naming the entry) hyperparameters of a received run that would make
    this process allocate more than :data:`MAX_POLICY_PARAMETERS` per network or :data:`MAX_BUFFER_VALUES`
    numbers of rollout or replay storage; checked before any model is built."""
    fix = "a run trained by `rec-gym train` is far smaller: this folder is damaged or not a rec_gym run"
    n_in = int(np.prod(observation_space.shape))
    n_out = int(getattr(action_space, "n", 1))
    policy_kwargs = hp.algo_kwargs.get("policy_kwargs") or {}
    if not isinstance(policy_kwargs, dict):
        raise ValueError(f"{where}: policy_kwargs={policy_kwargs!r} is not a dict")
    for hidden in _hidden_layers(policy_kwargs.get("net_arch"), str(where)):
        # SquaredFeaturesPolicy's first layer reads [x, x ** 2], twice the observation's width.
        sizes = [2 * n_in, *hidden, n_out]
        parameters = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
        if parameters > MAX_POLICY_PARAMETERS:
            raise ValueError(f"{where}: net_arch={policy_kwargs.get('net_arch')!r} makes a network of {parameters:,} "
                             f"parameters, over the limit of {MAX_POLICY_PARAMETERS:,} for a received run; {fix}")
    for key in ("text_dim", "hidden"):  # TextChoicePolicy's widths: its largest layers are n_in x hidden and hidden^2
        value = policy_kwargs.get(key, 1)
        if type(value) is not int or value < 1:
            raise ValueError(f"{where}: policy_kwargs {key}={value!r} must be a positive int")
    hidden = policy_kwargs.get("hidden", 0)
    if (n_in + 5 * hidden) * hidden > MAX_POLICY_PARAMETERS:
        raise ValueError(f"{where}: policy_kwargs hidden={hidden} makes a network of over {MAX_POLICY_PARAMETERS:,} "
                         f"parameters, the limit for a received run; {fix}")
    for key in ("n_steps", "batch_size", "buffer_size", "n_envs"):
        value = hp.n_envs if key == "n_envs" else hp.algo_kwargs.get(key, 1)
        if type(value) is not int or value < 1:
            raise ValueError(f"{where}: {key}={value!r} must be a positive int")
    rows = max(hp.algo_kwargs.get("n_steps", 1) * hp.n_envs, hp.algo_kwargs.get("buffer_size", 1) * 2,
               hp.algo_kwargs.get("batch_size", 1))
    if rows * (n_in + 4) > MAX_BUFFER_VALUES:
        raise ValueError(f"{where}: n_steps, n_envs, buffer_size and batch_size ask for {rows:,} stored steps of "
                         f"{n_in} numbers, over the limit of {MAX_BUFFER_VALUES:,} numbers for a received run; {fix}")


def _spaces(env: Any) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of a Gymnasium env, or of one agent of a PettingZoo parallel env."""
    if callable(env.observation_space):
        agent = env.possible_agents[0]
        return env.observation_space(agent), env.action_space(agent)
    return env.observation_space, env.action_space


def received_config(config: Any, config_path: Path, local_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked as untrusted input, its env kwargs merged with the caller's ``local_kwargs``.

    Raises ``ValueError`` naming the entry when the config names an algorithm, env id or field this
    package does not make itself, or asks for an argument that must come from the caller.
    """
    from rec_gym.agents.hint_sets import TEAM_ENV
    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS, RLRF4REC_ENV_IDS

    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object written by `rec-gym train`")
    for key, kind in (("algo", str), ("env_id", str), ("env_kwargs", dict), ("hyperparams", dict)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{config_path}: {key!r} is missing or not a {kind.__name__}")
    env_ids = (*ENV_IDS, *COMPOSE_ENV_IDS, *RLRF4REC_ENV_IDS, TEAM_ENV)
    if config["env_id"] not in env_ids:
        raise ValueError(f"{config_path}: env_id={config['env_id']!r} is not an env id of rec_gym ({', '.join(env_ids)})")
    try:
        check_algo(config["algo"], config["env_id"])
    except ValueError as exc:
        raise ValueError(f"{config_path}: {exc}") from None
    asked = local_only_kwargs(config["env_kwargs"])
    missing = {key: value for key, value in asked.items() if key not in local_kwargs}
    if missing:
        pairs = " ".join(env_kwarg_argument(key, value) for key, value in missing.items())
        raise ValueError(f"{config_path} asks for {', '.join(sorted(missing))}; a run folder never chooses the LLM, its "
                         f"arguments, or a file, folder or model to read: pass them yourself if you trust them, "
                         f"e.g. --env-kwargs {pairs}")
    kept = {key: value for key, value in config["env_kwargs"].items() if key not in asked}
    return {**config, "algo": config["algo"].lower(), "env_kwargs": {**kept, **local_kwargs}}


def env_kwarg_argument(key: str, value: Any) -> str:
    """``key=value`` as ``--env-kwargs`` reads it back (YAML scalars; JSON for anything else)."""
    plain = isinstance(value, str) and value.strip() == value and yaml.safe_load(value) == value
    return f"{key}={value if plain else json.dumps(value)}"


def local_only_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``env_kwargs`` that only the user, never a run folder, may supply (see :func:`load_run`)."""
    return {key: value for key, value in env_kwargs.items() if key in LOCAL_ONLY_KWARGS or not _shipped_value(key, value)}


def _shipped_value(key: str, value: Any) -> bool:
    """Whether an env argument from a received config names only what the package ships (no path, no download)."""
    from rec_gym.data import DATASETS

    if key == "dataset":
        return isinstance(value, str) and value.lower() in DATASETS
    if key == "kb":
        return value == "default" or (isinstance(value, list) and all(isinstance(hint, str) for hint in value))
    if key == "encoder":
        return isinstance(value, str) and (value in ("minilm", "hashing") or
                                           (value.startswith("hashing-") and value[8:].isdigit()))
    return value is None or isinstance(value, (bool, int, float, str))


def load_model(model_path: Path, config: dict[str, Any], observation_space: Any, action_space: Any,
               hp: Hyperparams) -> Any:
    """Load an SB3 ``model.zip`` without unpickling anything (see the module docstring)."""
    cls = algo_class(config["algo"])
    try:
        data = json.loads(read_zip_member(model_path, "data", MAX_ZIP_DATA_BYTES))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{model_path}: not a Stable-Baselines3 model.zip ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{model_path}: not a Stable-Baselines3 model.zip (its 'data' entry is not a JSON object)")
    if isinstance(hp.policy, str) and hp.policy not in cls.policy_aliases:
        raise ValueError(f"policy={hp.policy!r} is not a policy of {cls.__name__}; use one of {sorted(cls.policy_aliases)}")
    policy = cls.policy_aliases[hp.policy] if isinstance(hp.policy, str) else hp.policy
    # The constructor's defaults and the run's hyperparameters are what the model was built from;
    # SB3 converts some of them (schedules, train_freq) into objects that it pickles.
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    rebuilt = {**defaults, **hp.algo_kwargs, "policy_class": policy, "observation_space": observation_space,
               "action_space": action_space,
               # SB3 stores {} for no policy_kwargs, and reads a dict back.
               "policy_kwargs": dict(hp.algo_kwargs.get("policy_kwargs") or {})}
    pickled = [key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value]
    return cls.load(model_path, device="cpu", custom_objects={key: rebuilt.get(key) for key in pickled})


def evaluate_run(path: str | os.PathLike, split: str = "test", max_sessions: int | None = None,
                 env_kwargs: dict[str, Any] | None = None):
    """Load a saved run (:func:`load_run`) and score it on ``split`` of its env (:func:`evaluate_policy`)."""
    policy, config = load_run(path, env_kwargs)
    env = make_run_env(config["env_id"], split, config["env_kwargs"])
    try:
        return evaluate_policy(policy, config["env_id"], env, max_sessions), config
    finally:
        env.close()
