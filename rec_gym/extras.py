"""The optional extras of ``setup.cfg`` and how to install one into the installation at hand."""

from __future__ import annotations

from pathlib import Path


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` (e.g. ``"dpo"``) to this installation of rec_gym.

    From a clone installed in place (``pip install -e .``), the clone's folder beside the package
    holds ``setup.cfg`` and the command names that folder; otherwise both the package-index form
    and the clone form are given, since this package may have been installed from either.
    """
    clone = Path(__file__).resolve().parent.parent
    if (clone / "setup.cfg").is_file():
        return f"pip install -e '{clone}[{extra}]'"
    return f"pip install 'rec_gym[{extra}]', or from a clone of rec_gym: pip install -e '.[{extra}]'"


class MissingExtra(ImportError):
    """An optional dependency of ``extra`` is not installed; the message gives the command that adds it."""

    def __init__(self, feature: str, extra: str, cause: ImportError) -> None:
        super().__init__(f"{feature} needs the [{extra}] extra, which is not installed ({cause}); "
                         f"install it with {install_command(extra)}")
