"""Retrieval policies: baselines, SB3 training, evaluation, and the protocol custom agents follow.

Any object with SB3's ``predict(obs, deterministic=True) -> (action, state)`` is a policy
(:class:`Policy`), so SB3 models, the baselines and your own agent are scored by the same
:func:`evaluate`; the README's custom-agent example is run as written by the tests.
"""

from rec_gym.agents.baselines import BestFixedHint, FixedHint, LinUCB, NoHint, Oracle, UniformRandomHint
from rec_gym.agents.evaluation import METRICS, EvaluationResult, evaluate, score_actions
from rec_gym.agents.policy import Policy, predict_actions
from rec_gym.agents.statistics import iqm, stratified_bootstrap_ci, summarize

__all__ = [
    "BestFixedHint", "EvaluationResult", "FixedHint", "LinUCB", "METRICS", "NoHint",
    "Oracle", "Policy", "UniformRandomHint", "evaluate", "iqm", "predict_actions", "score_actions",
    "stratified_bootstrap_ci", "summarize",
]
