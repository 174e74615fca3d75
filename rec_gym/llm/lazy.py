"""Backends built on first use and shared within a process.

An environment needs its backend's ``name`` at once (it keys the feedback table) but its model only
when the table lacks an answer. :func:`lazy_llm` gives, for a spec string, one backend per process
and per (spec, arguments), and builds models only on the first request when the name can be known
without loading them:

- ``embedding:<model>``: the name is the model's identity (package version, folder fingerprint or
  hub name), known without loading;
- ``hf:<model>``: known once this machine has built the same pinned model (``@revision`` or a local
  folder, identified by its fingerprint) with the same arguments: the name is then read from
  ``$REC_GYM_CACHE/backends``;
- ``simulated`` and ``openai:`` cost nothing to build and are built at once.

So an env whose table is complete never loads a model, and eight training envs plus a validation env
in one process load it at most once. :class:`LazyBackend` does the same for any custom backend whose
name is known up front.

Copies: a backend that holds a model or a connection pickles as its spec and arguments
(:func:`reduce_to_spec`), never its weights. Loading one gives that process's shared backend of the
same spec and arguments, built once per process, on first use where it can wait; in the process that
pickled it, that is the backend itself, so a deep copy of an env shares its model like a second
``gym.make`` does.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence

from rec_gym.llm.protocol import GenerateRequest, LLMBackend, RankRequest, Ranking, can_write
from rec_gym.storage import cache_dir, stable_hash, write_json_atomic

_SHARED: dict[str, LLMBackend] = {}
_SHARED_LOCK = threading.Lock()
# Backends pickled in this process, by spec key: a copy made here is the backend itself.
_PICKLED: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()


class LazyBackend:
    """A backend whose ``name`` is known now and whose engine is built by ``factory()`` on the first request.

    Args:
        name: the name the built backend will have (it keys tables and caches).
        factory: builds the backend; called at most once, on the first ``rank`` or ``write``.

    Raises:
        RuntimeError: on that first request, when the built backend's name is not ``name`` (nothing
            answered under the wrong name is kept).
    """

    def __init__(self, name: str, factory: Callable[[], LLMBackend], on_mismatch: Callable[[], None] | None = None) -> None:
        self.name = name
        self._factory = factory
        self._on_mismatch = on_mismatch
        self._backend: LLMBackend | None = None
        self._lock = threading.Lock()
        self._spec: tuple[str, dict[str, Any]] | None = None  # set by lazy_llm: how to make this backend again

    def __reduce__(self) -> tuple[Any, ...]:
        if self._spec is not None:
            return reduce_to_spec(self, "lazy", *self._spec)
        # A custom factory travels as itself (it must pickle); the engine is built again on first use.
        return LazyBackend, (self.name, self._factory, self._on_mismatch)

    def __repr__(self) -> str:
        return f"LazyBackend(name={self.name!r}, built={self.built})"

    @property
    def built(self) -> bool:
        return self._backend is not None

    @property
    def backend(self) -> LLMBackend:
        """The engine, built now if it was not yet."""
        with self._lock:
            if self._backend is None:
                backend = self._factory()
                if backend.name != self.name:
                    if self._on_mismatch is not None:
                        self._on_mismatch()
                    raise RuntimeError(f"the backend was expected to be {self.name!r} but is {backend.name!r}; "
                                       "the record that named it is removed, so running again uses the right name")
                self._backend = backend
            return self._backend

    @property
    def writes(self) -> bool:
        return can_write(self.backend)

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return self.backend.rank(requests) if requests else []

    def write(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return self.backend.write(requests) if requests else []  # type: ignore[attr-defined]

    def __getattr__(self, attr: str) -> Any:
        # Counters and options of the engine (failures, retries, ...): only once it exists.
        if attr.startswith("_") or self.__dict__.get("_backend") is None:
            raise AttributeError(attr)
        return getattr(self.__dict__["_backend"], attr)

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if callable(close):
            close()


def _record_path(key: str) -> Path:
    return cache_dir("backends") / f"{key}.json"


def _identity(spec: str, kwargs: dict[str, Any]) -> str | None:
    """A key that pins what ``spec`` with ``kwargs`` builds, or ``None`` when it is not pinned."""
    from rec_gym.llm.hf import folder_fingerprint, parse_model_spec

    kind, _, model = spec.partition(":")
    if kind != "hf" or not model:
        return None
    model_id, revision = parse_model_spec(model)
    revision = kwargs.get("revision") or revision
    if os.path.isdir(os.path.expanduser(model_id)):
        pin = f"folder:{folder_fingerprint(os.path.expanduser(model_id))}"
    elif revision:
        pin = f"revision:{revision}"
    else:
        return None
    import torch

    # The default dtype follows the device, so the device counts where the arguments leave it open.
    device = kwargs.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    return stable_hash("hf-backend-name-v1", model_id, pin, device, sorted((k, repr(v)) for k, v in kwargs.items()))


def _known_name(spec: str, kwargs: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the name ``spec`` will have, if it can be known without building it; the record key, if any)."""
    kind, _, model = spec.partition(":")
    if kind == "embedding" and model:
        from rec_gym.llm.embedding import EmbeddingBackend

        return EmbeddingBackend.name_for(model, **kwargs), None
    key = _identity(spec, kwargs)
    if key is None:
        return None, None
    try:
        return json.loads(_record_path(key).read_text(encoding="utf-8"))["name"], key
    except (OSError, ValueError, KeyError, TypeError):
        return None, key


def shared_llm(spec: "str | LLMBackend", **kwargs: Any) -> LLMBackend:
    """:func:`~rec_gym.llm.make_llm`, built once per process for the same spec string and arguments."""
    from rec_gym.llm import make_llm

    if not isinstance(spec, str):
        return make_llm(spec, **kwargs)
    key = shared_key("shared", spec, kwargs)
    if key is None:  # arguments that cannot be written down are not shared
        return make_llm(spec, **kwargs)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = make_llm(spec, **kwargs)
        return _SHARED[key]


def shared_key(kind: str, spec: str, kwargs: dict[str, Any]) -> str | None:
    """The key of ``spec`` with ``kwargs`` among a process's shared backends; ``None`` when the arguments cannot
    be written down (such backends are not shared)."""
    try:
        return stable_hash(kind, spec, kwargs)
    except TypeError:
        return None


def rebuilt(kind: str, spec: str, kwargs: dict[str, Any]) -> LLMBackend:
    """What a pickled backend loads as: the backend pickled in this process, while it lives; else this
    process's :func:`lazy_llm` (``kind="lazy"``) or :func:`shared_llm` (``kind="shared"``) backend of
    ``spec`` with ``kwargs``."""
    key = shared_key(kind, spec, kwargs)
    backend = _PICKLED.get(key) if key is not None else None
    if backend is not None:
        return backend
    return (lazy_llm if kind == "lazy" else shared_llm)(spec, **kwargs)


def reduce_to_spec(backend: LLMBackend, kind: str, spec: str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """``__reduce__`` of a backend made from ``spec`` and ``kwargs``: those, not its model (see the module docstring).

    ``backend`` is remembered (weakly, so this keeps no model alive) as what loading the pickle in this
    process gives back, instead of loading the model again.
    """
    key = shared_key(kind, spec, kwargs)
    if key is not None:
        _PICKLED[key] = backend
    return rebuilt, (kind, spec, dict(kwargs))


def lazy_llm(spec: "str | LLMBackend", **kwargs: Any) -> LLMBackend:
    """The backend of ``spec``, shared within the process, and built on first use where its name is known.

    See the module docstring for which specs can wait. A spec whose name cannot be known yet is built
    now (and, for a pinned ``hf:`` model, its name recorded so the next env can wait).
    """
    if not isinstance(spec, str):
        from rec_gym.llm import make_llm

        return make_llm(spec, **kwargs)
    key = shared_key("lazy", spec, kwargs)
    if key is None:
        return shared_llm(spec, **kwargs)
    with _SHARED_LOCK:
        if key in _SHARED:
            return _SHARED[key]
    name, record = _known_name(spec, kwargs)
    if name is None:
        backend = shared_llm(spec, **kwargs)
        if record is not None:
            write_json_atomic(_record_path(record), {"name": backend.name, "spec": spec})
    else:
        on_mismatch = (lambda: _record_path(record).unlink(missing_ok=True)) if record else None
        backend = LazyBackend(name, lambda: shared_llm(spec, **kwargs), on_mismatch)
        backend._spec = (spec, dict(kwargs))
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, backend)
