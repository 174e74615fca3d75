"""Sphinx configuration of the rec_gym documentation (furo theme, MyST Markdown).

The env pages (``envs/``) and the benchmark result pages (``results/``) are written at build time by
the ``rec_gym_docs`` extension in ``_ext/``, from the env docstrings and from the committed files
under ``benchmarks/``; both folders are git-ignored.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import rec_gym  # noqa: E402  (registers the env ids the env pages are written for)

project = "rec_gym"
author = "rec_gym contributors"
copyright = "rec_gym contributors, MIT licence"
release = rec_gym.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "rec_gym_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_screenshots", "Thumbs.db", ".DS_Store"]
root_doc = "index"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Every cross-reference must resolve: a reference to a name that does not exist fails the build.
nitpicky = True
nitpick_ignore_regex = [
    # Annotations that name third-party and standard-library types without a documented target here.
    (r"py:.*", r"(numpy|np|gymnasium|gym|torch|pathlib|os|typing|collections|concurrent|sqlite3|"
                  r"stable_baselines3|pettingzoo|ray|filelock|transformers|openai)\b.*"),
    (r"py:class", r"(NDArray|ArrayLike|Path|PathLike|Callable|Iterable|Iterator|Sequence|Mapping|Any|"
                  r"TypeVar|Protocol|Self|ObsType|ActType|AutoresetMode|Module|FileLock|PreTrained\w*)\b.*"),
    # Fragments of quoted annotations ("dict[str, int] | None") that Sphinx splits before resolving.
    (r"py:class", r"'.*"),
    # CachedBackend's "hits, misses:" attribute line, which an :ivar: field reads as a type and a name.
    (r"py:class", r"hits"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# A package's __all__ re-exports what its modules define; each object is documented where it is defined.
autodoc_default_options = {"members": True, "undoc-members": True, "ignore-module-all": True}
# Gymnasium's own reset/step/render docstrings speak of its attributes; the envs' manuals say what they do.
autodoc_inherit_docstrings = False

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes sections as fields of the class, not as second descriptions of the dataclass fields.
napoleon_use_ivar = True

# Docstrings' "::" blocks are prompts, file layouts and YAML, not Python; fenced blocks name their language.
highlight_language = "text"

html_theme = "furo"
html_title = f"rec_gym {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": True,
}
