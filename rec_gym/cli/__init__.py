"""The ``rec-gym`` command: one module per command group, one error policy.

========================  ================================================================
module                    commands
========================  ================================================================
:mod:`.envs`              ``envs``, ``show``
:mod:`.precompute`        ``precompute``
:mod:`.knowledge`         ``build-kb``
:mod:`.agents`            ``train``, ``evaluate``, ``benchmark``
:mod:`.recsys`            ``train-recsys``, ``dpo-data``, ``dpo-train``, ``rlrf4rec-loop``
========================  ================================================================

Each module maps its command names to ``(configure, run, one-line help)``; the library code they
call never imports this package.

Error policy: a failure caused by what the user asked for, by a file they gave or received, or by
the machine prints one line, ``rec-gym <command>: error: <message>``, to stderr, with the whole
message on that line (it says what to fix), and exits with

- status 2 for the user's mistake: a bad argument or value, a missing, bad or damaged file
  (``ValueError``, ``KeyError``, ``TypeError``, ``OverflowError``, ``RecursionError``, a
  ``RuntimeError`` such as a weight-shape mismatch, ``EOFError``, a bad zip, pickle, safetensors,
  YAML or SQLite file, a path that does not exist or cannot be written);
- status 1 for what the machine lacks: memory, disk, a server that does not answer, a model or
  dataset that cannot be had, an optional dependency that is not installed (the line gives the
  ``pip`` command).

Any other exception is a fault of rec_gym itself: one line naming it, status 1, and a request to
report it with the traceback. ``--debug`` (or ``REC_GYM_DEBUG=1``) shows the traceback of every
failure instead. Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
from typing import Callable, NoReturn, Sequence

# The command groups, in the order `rec-gym --help` lists their commands.
COMMAND_MODULES = ("envs", "precompute", "knowledge", "agents", "recsys")

# Longest message printed; the rest of a longer one (a library quoting a whole file) is left to --debug.
MAX_MESSAGE = 2000

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]


def commands() -> dict[str, Command]:
    """``{name: (configure, run, one-line help)}`` of every command, in help order."""
    table: dict[str, Command] = {}
    for module in COMMAND_MODULES:
        table.update(importlib.import_module(f"rec_gym.cli.{module}").COMMANDS)
    return table


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors follow the error policy: one line on stderr, status 2
    (``--help`` still prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    from rec_gym import __version__

    parser = OneLineParser(prog="rec-gym", description="Gymnasium environments where a frozen LLM recommending "
                                     "from session data is the environment and choosing a hint is the action.")
    parser.add_argument("--version", action="version", version=f"rec-gym {__version__}", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: REC_GYM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (configure, run, help_text) in commands().items():
        # The one-line help is the description too, unless the command's configure sets a longer one.
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        configure(p)
        p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rec-gym`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("REC_GYM_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        return report(args.command, "interrupted", 130)
    except Exception as exc:
        if debug:
            raise
        status = exit_status(exc)
        if status is None:
            return report(args.command, f"{type(exc).__name__}: {exc} (an unexpected error of rec_gym: please report "
                          "it with the traceback that --debug shows)", 1)
        return report(args.command, describe(exc), status)


def _types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes ``module.<name>`` of a library, if the failing code had imported it.

    An exception of a library can only have been raised once that library was imported, so the
    policy never imports torch or safetensors itself.
    """
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names if loaded is not None and hasattr(loaded, name))


# A path the user named that does not exist, is of the wrong kind, or may not be written.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
# OS errors of the machine whatever the path: disk or quota full, out of memory, I/O, too many files.
_MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EROFS}


def _machine_errors() -> tuple[type[BaseException], ...]:
    from rec_gym.data.download import ChecksumMismatchError, DatasetNotFoundError
    from rec_gym.llm.protocol import BackendConfigError

    return (MemoryError, ImportError, ConnectionError, TimeoutError, DatasetNotFoundError, ChecksumMismatchError,
            BackendConfigError, *_types("torch", "OutOfMemoryError"), *_types("sqlite3", "OperationalError"))


def _user_errors() -> tuple[type[BaseException], ...]:
    import pickle
    import zipfile
    import zlib

    import gymnasium

    return (ValueError, KeyError, IndexError, TypeError, ArithmeticError, RuntimeError, EOFError, _PATH_ERRORS,
            zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, gymnasium.error.Error,
            *_types("safetensors", "SafetensorError"), *_types("yaml", "YAMLError"),
            *_types("sqlite3", "DatabaseError"))


def exit_status(exc: BaseException) -> int | None:
    """2 for the user's mistake, 1 for the machine's, ``None`` for a fault of rec_gym (see the module docstring)."""
    if isinstance(exc, OSError) and not isinstance(exc, _PATH_ERRORS):
        return 1
    if isinstance(exc, _PATH_ERRORS) and exc.errno in _MACHINE_ERRNOS:
        return 1
    if isinstance(exc, _machine_errors()):  # before RuntimeError: several of them are RuntimeErrors
        return 1
    if isinstance(exc, _user_errors()):
        return 2
    return None


# gymnasium.make re-raises an env's TypeError with this appended, every keyword argument included.
_ENV_CREATOR_SUFFIX = re.compile(r" was raised from the environment creator for \S+ with kwargs \(.*\)$", re.S)


def describe(exc: BaseException) -> str:
    """The message of ``exc`` as a user reads it: rec_gym's own messages as they are, a library's with its type."""
    message = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
    text = str(message)
    if isinstance(exc, TypeError) and _ENV_CREATOR_SUFFIX.search(text):
        return _ENV_CREATOR_SUFFIX.sub("", text)  # an env's own argument check: its message is the fix
    if isinstance(exc, MemoryError):
        return "out of memory" + (f" ({text})" if text else "")
    if isinstance(exc, (ValueError, KeyError, OSError)) or type(exc).__module__.startswith("rec_gym"):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report(command: str, message: str, status: int) -> int:
    """Print ``message`` as the one line ``rec-gym <command>: error: ...`` on stderr; returns ``status``."""
    line = " ".join(str(message).split())
    if len(line) > MAX_MESSAGE:
        line = line[:MAX_MESSAGE] + "... (--debug shows all of it)"
    print(f"rec-gym {command}: error: {line}", file=sys.stderr)
    return status
