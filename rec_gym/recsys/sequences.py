"""What the recommenders learn from: the sessions' item sequences, without a held-out target.

A training session gives its history followed by its target; a validation or test session gives its
history alone. The envs keep a session's last 20 history items; the recommenders can read longer
histories from the same sessions loaded with a larger ``max_history``.
"""

from __future__ import annotations

import numpy as np

from rec_gym.data.sessions import MAX_HISTORY
from rec_gym.data.types import SessionDataset

ENV_HISTORY = MAX_HISTORY  # history items per session that the envs keep (load_dataset's default)
TRAIN_HISTORY = 1000  # history items per session that training reads by default


def load_training_sessions(dataset: str, data_dir: str | None = None, *, max_history: int = TRAIN_HISTORY, seed: int = 0,
                           n_train: int | None = None) -> SessionDataset:
    """The sessions of ``load_dataset(dataset, data_dir, seed=seed, n_train=n_train)`` with up to
    ``max_history`` history items each, for training (pass them as ``sessions=``).

    Their candidates are never read, so one negative is drawn per session, which long histories in a
    small catalog always leave room for.
    """
    from rec_gym.data import load_dataset

    return load_dataset(dataset, data_dir, n_candidates=2, seed=seed, n_train=n_train, max_history=max_history)


def longer_sessions(loaded: SessionDataset, dataset: str, data_dir: str | None = None, *,
                    max_history: int = TRAIN_HISTORY, seed: int = 0, n_train: int | None = None) -> SessionDataset | None:
    """:func:`load_training_sessions` when some history of ``loaded`` (``dataset`` as the envs load it) has
    the envs' :data:`ENV_HISTORY` items, so it may have been cut; ``None`` when none has (Steam's and the
    synthetic sessions are shorter) or ``max_history`` is no longer."""
    if max_history <= ENV_HISTORY or loaded.history.shape[1] < ENV_HISTORY:
        return None
    return load_training_sessions(dataset, data_dir, max_history=max_history, seed=seed, n_train=n_train)


def session_sequences(dataset: SessionDataset, sessions: SessionDataset | None = None) -> list[np.ndarray]:
    """Per dataset row: history then target for a training session, the history alone otherwise
    (histories from ``sessions`` when given; see :func:`training_sequences`)."""
    source = dataset if sessions is None else _checked_sessions(dataset, sessions)
    train = source.split == "train"
    return [np.append(source.history_of(r), source.target[r]) if train[r] else source.history_of(r)
            for r in range(len(source))]


def _checked_sessions(dataset: SessionDataset, sessions: SessionDataset) -> SessionDataset:
    same = (len(sessions) == len(dataset) and sessions.name == dataset.name
            and np.array_equal(sessions.session_ids, dataset.session_ids)
            and np.array_equal(sessions.target, dataset.target) and np.array_equal(sessions.split, dataset.split))
    if not same:
        raise ValueError(
            f"sessions= ({sessions.name!r}, {len(sessions)} sessions) are not the sessions of {dataset.name!r} "
            f"({len(dataset)} sessions): load the same dataset with the same seed and n_train and only a larger "
            f"max_history, e.g. load_training_sessions({dataset.name!r}, data_dir, max_history=1000)")
    return sessions


def training_sequences(dataset: SessionDataset, sessions: SessionDataset | None = None
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
    """(dataset rows, sequences) the recommender learns from: every training session's history followed by
    its target, and the histories alone of the validation and test sessions (those with 2 items or more).

    A held-out session's history is known when its next item is asked for, so it is training data, as
    in SASRec's own protocol (a user's earlier items train the model that predicts the last one); no
    validation or test target is ever seen.

    Args:
        sessions: the same sessions with longer histories (``load_dataset`` with a larger ``max_history``
            and otherwise the same arguments); their histories are read instead of ``dataset``'s.
            Raises ``ValueError`` when they are not the same sessions (ids, targets, splits).
    """
    sequences = session_sequences(dataset, sessions)
    rows = np.array([r for r, s in enumerate(sequences) if len(s) >= 2], dtype=np.int64)
    return rows, [sequences[r] for r in rows]


def training_windows(rows: np.ndarray, sequences: list[np.ndarray], max_len: int
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cut sequences longer than ``max_len + 1`` into windows of ``max_len + 1`` items, from the end.

    Consecutive windows share one item (the last input of one is the first of the next), so every
    next-item transition of a sequence is a target exactly once; a window starts its context afresh.
    Returns (the dataset row of each window, the windows), windows of one sequence newest first.
    """
    out_rows, windows = [], []
    for row, seq in zip(rows.tolist(), sequences):
        end = len(seq)
        while end >= 2:
            windows.append(seq[max(0, end - max_len - 1):end])
            out_rows.append(row)
            end -= max_len
    return np.asarray(out_rows, dtype=np.int64), windows
