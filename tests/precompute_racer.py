"""One process that runs ``rec-gym precompute`` in several racing trials, each on a fresh table file.

``python tests/precompute_racer.py FOLDER NAME TRIALS ARG...`` runs, for trial ``t`` in ``0..TRIALS - 1``:
touch ``FOLDER/NAME-ready-t``, wait until ``FOLDER/go-t`` exists, then ``rec-gym precompute ARG... --table
FOLDER/table-t.npz`` with its output in ``FOLDER/NAME-t.out``, and print ``t <exit status>``. Several of
these started with different ``--max-hints`` and released together race on one table per trial; the
process imports rec_gym once, so a trial costs a run, not an interpreter start.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from rec_gym.cli import main as rec_gym_command


def main(folder: str, name: str, trials: int, args: list[str]) -> None:
    root = Path(folder)
    for t in range(trials):
        (root / f"{name}-ready-{t}").touch()
        deadline = time.monotonic() + 60
        while not (root / f"go-{t}").exists() and time.monotonic() < deadline:
            time.sleep(0.0005)
        with open(root / f"{name}-{t}.out", "w") as out, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            status = rec_gym_command(["precompute", *args, "--table", str(root / f"table-{t}.npz")])
        print(t, status, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
