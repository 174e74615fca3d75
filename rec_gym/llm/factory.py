"""A custom backend named on the command line: ``--backend-factory MODULE:CALLABLE``."""

from __future__ import annotations

import importlib
from typing import Any


def backend_from_factory(spec: str) -> Any:
    """The backend ``CALLABLE()`` returns, ``CALLABLE`` being attribute ``spec.partition(":")[2]`` of the module.

    Raises ``ValueError`` naming ``spec`` when it is not ``MODULE:CALLABLE``, the module cannot be
    imported or has no such attribute: each is a mistake in the argument.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--backend-factory {spec!r}: expected MODULE:CALLABLE, e.g. mypackage.llms:make_backend")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--backend-factory {spec!r}: cannot import {module_name} ({exc}); is it on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"--backend-factory {spec!r}: {module_name} has no callable {attr!r}")
    return factory()
