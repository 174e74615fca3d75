"""Sphinx extension that writes the rec_gym pages which must stay true by construction.

- ``envs/``: one page per registered env id, and one for PettingZoo's ``hint_team_v0``, from the env
  class's docstring (the env's manual) and the id's registered defaults.
- ``results/``: the benchmark results, from the committed tables, texts and plots under ``benchmarks/``.
- API reference: docstrings are written in the env manuals' style (Markdown headings and ``| a | b |``
  tables around reStructuredText inline markup); :func:`docstring_to_rst` turns those two Markdown
  constructs into reStructuredText for autodoc and for the env pages alike.

Both folders are rewritten on every build (a file only when its text changed, so Sphinx rereads only
what changed) and are git-ignored: nothing in them is edited by hand.
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"

_HEADING = re.compile(r"^(#{1,3}) +(\S.*?)\s*#*\s*$")
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_BULLET = re.compile(r"^(\s*)[-*] \S")
# Inline literals, paired left to right; one that opens or closes on a space (`` Hint: <hint>``, `` - ``)
# is no markup in reStructuredText, so it loses those spaces.
_INLINE_LITERAL = re.compile(r"``(.+?)``", re.S)
_BARE_MEMBER_ROLE = re.compile(r":(meth|attr):`([A-Za-z_]\w*)`")
_UNDERLINES = {1: "-", 2: "-", 3: "~"}


def _cells(row: str) -> list[str]:
    """The cells of one Markdown table row, stripped (``\\|`` inside a cell is a literal bar)."""
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def _list_table(rows: list[str], indent: str) -> list[str]:
    """A Markdown table (header, separator, body rows) as a ``list-table`` directive."""
    header, body = _cells(rows[0]), [_cells(row) for row in rows[2:]]
    width = max(len(header), *(len(row) for row in body)) if body else len(header)
    table = [row + [""] * (width - len(row)) for row in ([header] if any(header) else []) + body]
    lines = [f"{indent}.. list-table::", f"{indent}   :header-rows: {1 if any(header) else 0}", ""]
    for row in table:
        for k, cell in enumerate(row):
            lines.append(f"{indent}   {'* -' if k == 0 else '  -'} {cell}".rstrip())
    return lines + [""]


def docstring_to_rst(text: str, *, sections: bool, owner: str | None = None) -> str:
    """reStructuredText for a docstring written in the env manuals' style.

    Args:
        text: the docstring (indented or not).
        sections: ``True`` turns ``#``/``##``/``###`` headings into section titles (an env page);
            ``False`` into ``.. rubric::`` (autodoc, where sections are not allowed).
        owner: the documented class's dotted name; a bare ``:meth:`name``` inside it is qualified
            with it so that it resolves outside the class too.

    Markdown tables become ``list-table`` directives, a bullet list gets the blank line before it that
    reStructuredText needs, and the rest (inline literals, roles, ``::`` blocks, doctests) is kept.
    """
    lines = inspect.cleandoc(text).splitlines()
    out: list[str] = []
    k = 0
    while k < len(lines):
        line = lines[k]
        heading = _HEADING.match(line)
        is_table = (line.lstrip().startswith("|") and k + 1 < len(lines)
                    and _TABLE_SEPARATOR.match(lines[k + 1].strip()) is not None)
        if heading:
            title = heading.group(2)
            if out and out[-1].strip():
                out.append("")
            if sections:
                out += [title, _UNDERLINES[len(heading.group(1))] * len(title), ""]
            else:
                out += [f".. rubric:: {title}", ""]
            k += 1
            continue
        if is_table:
            end = k
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            if out and out[-1].strip():
                out.append("")
            indent = line[: len(line) - len(line.lstrip())]
            out += _list_table([row.strip() for row in lines[k:end]], indent)
            k = end
            continue
        bullet = _BULLET.match(line)
        if bullet and out and out[-1].strip():
            previous = out[-1]
            previous_indent = len(previous) - len(previous.lstrip())
            if not _BULLET.match(previous) and previous_indent <= len(bullet.group(1)):
                out.append("")
        out.append(line)
        k += 1
    rst = "\n".join(out) + "\n"
    rst = _INLINE_LITERAL.sub(lambda m: f"``{m.group(1).strip()}``", rst)
    if owner:
        rst = _BARE_MEMBER_ROLE.sub(lambda m: f":{m.group(1)}:`~{owner}.{m.group(2)}`", rst)
    return rst


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _title(text: str, underline: str = "=") -> str:
    return f"{text}\n{underline * len(text)}\n"


@dataclass(frozen=True)
class EnvPage:
    """What one env page shows: the id, its family, the class or module whose docstring is its manual."""

    env_id: str
    family: str
    target: str  # dotted path of the class (or module) whose docstring is the manual
    defaults: dict[str, Any]
    vector_entry_point: str | None


def env_pages() -> list[EnvPage]:
    """A page for every id ``import rec_gym`` registers, then PettingZoo's ``hint_team_v0``."""
    import gymnasium as gym

    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS, RLRF4REC_ENV_IDS

    families = {"Re2LLM: one hint per prompt": ENV_IDS, "Re2LLM: several hints per prompt": COMPOSE_ENV_IDS,
                "RLRF4Rec: preference texts": RLRF4REC_ENV_IDS}
    pages = []
    for family, ids in families.items():
        for env_id in ids:
            spec = gym.registry[env_id]
            module, _, name = str(spec.entry_point).partition(":")
            vector = spec.vector_entry_point
            pages.append(EnvPage(env_id, family, f"{module}.{name}", dict(spec.kwargs),
                                 str(vector).replace(":", ".") if vector else None))
    pages.append(EnvPage("hint_team_v0", "PettingZoo: a team of retrievers", "rec_gym.envs.hint_team_v0", {}, None))
    return pages


def _manual(target: str) -> tuple[str, str, bool]:
    """(docstring, owner class or module, is_module) of the manual at ``target``."""
    try:
        module = importlib.import_module(target)
        return inspect.getdoc(module) or "", target, True
    except ModuleNotFoundError:
        module_name, _, name = target.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        return inspect.getdoc(cls) or "", target, False


def env_page_rst(page: EnvPage) -> str:
    """The reStructuredText of one env page."""
    doc, owner, is_module = _manual(page.target)
    role = "mod" if is_module else "class"
    lines = [f".. _env-{page.env_id}:", "", _title(page.env_id)]
    rows = [("Family", page.family), ("Manual", f":{role}:`~{owner}` (its docstring is this page)")]
    if is_module:
        rows.append(("Make", f"``{page.target.rpartition('.')[2]}.parallel_env(...)`` or ``.env(...)``"))
    else:
        rows.append(("Make", f'``gym.make("{page.env_id}", **kwargs)`` after ``import rec_gym``'))
        defaults = ", ".join(f"``{key}={value!r}``" for key, value in page.defaults.items())
        rows.append(("Defaults of this id", defaults or "none"))
        if page.vector_entry_point:
            rows.append(("Vector env", f':class:`~{page.vector_entry_point}` (``gym.make_vec("{page.env_id}", '
                                       f'num_envs=n, vectorization_mode="vector_entry_point")``)'))
    lines += [".. list-table::", "   :stub-columns: 1", ""]
    for name, value in rows:
        lines += [f"   * - {name}", f"     - {value}"]
    lines += ["", ".. py:currentmodule:: " + (owner if is_module else owner.rpartition(".")[0]), ""]
    # A module manual opens with its own "# Title"; the page title already names the env.
    body = re.sub(r"\A\s*# [^\n]*\n", "", doc) if is_module else doc
    lines.append(docstring_to_rst(body, sections=True, owner=None if is_module else owner))
    return "\n".join(lines)


def env_index_rst(pages: list[EnvPage]) -> str:
    lines = [_title("Environments"),
             "Every id below is registered by ``import rec_gym``; ``hint_team_v0`` is a PettingZoo module.",
             "Each page is written from the env's docstring, its manual, when the documentation is built.",
             "An id is a set of defaults: every id of a family takes the same keyword arguments.", ""]
    lines += [".. list-table::", "   :header-rows: 1", "", "   * - id", "     - family", "     - dataset",
              "     - LLM or writer"]
    for page in pages:
        llm = page.defaults.get("llm", page.defaults.get("writer", "(kwarg)"))
        lines += [f"   * - :ref:`{page.env_id} <env-{page.env_id}>`", f"     - {page.family}",
                  f"     - ``{page.defaults.get('dataset', 'synthetic')}``", f"     - ``{llm}``"]
    lines += ["", ".. toctree::", "   :hidden:", ""]
    lines += [f"   {page.env_id}" for page in pages]
    return "\n".join(lines) + "\n"


def write_env_pages(folder: Path) -> list[str]:
    """Write ``folder/index.rst`` and one ``<id>.rst`` per env; remove pages of ids no longer registered."""
    pages = env_pages()
    wanted = {f"{page.env_id}.rst" for page in pages} | {"index.rst"}
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    for page in pages:
        _write_if_changed(folder / f"{page.env_id}.rst", env_page_rst(page))
    _write_if_changed(folder / "index.rst", env_index_rst(pages))
    return [page.env_id for page in pages]


@dataclass(frozen=True)
class ResultPage:
    """A results page: its title, what the benchmark does, and the committed files it shows, in order."""

    name: str
    title: str
    intro: str
    files: tuple[str, ...]  # paths under benchmarks/: .md tables, .txt outputs, .png plots


RESULT_PAGES = (
    ResultPage("full", "The full benchmark",
               "PPO, A2C and DQN with 5 seeds on four envs, beside the baselines, made with "
               "``rec-gym benchmark --config full --out benchmarks/results/full``. How to read the intervals, the "
               "IQM and *beats the best fixed hint* is in {doc}`/guides/benchmark`.",
               ("results/full/results.md", "results/full/comparison.png", "results/full/learning_curves.png",
                "synthetic_ceiling.txt")),
    ResultPage("hint_sets", "Several hints per prompt",
               "Composition (MaskablePPO, PPO) and team (team and difference rewards) envs against one-hint PPO "
               "and fixed and oracle sets, made with ``python benchmarks/hint_sets.py``; see "
               "{doc}`/guides/composition`.",
               ("hint_sets/synthetic/results.md", "hint_sets/synthetic/comparison.png",
                "hint_sets/steam/results.md", "hint_sets/steam/comparison.png")),
    ResultPage("kb_build", "A built knowledge base",
               "A knowledge base written by reflective exploration against the default, random strings and "
               "generic hints, made with ``python benchmarks/kb_build/compare.py``; see {doc}`/guides/build_kb`.",
               ("kb_build/results.md",)),
    ResultPage("rlrf4rec", "RLRF4Rec",
               "Popularity, SASRec and the knowledge-augmented SASRec, and policies on ``RLRF4Rec-Synthetic-v0``, "
               "made with ``python benchmarks/rlrf4rec/recommenders.py`` and ``env_policies.py``; see "
               "{doc}`/guides/rlrf4rec`.",
               ("rlrf4rec/recommenders.md", "rlrf4rec/env_policies.md")),
    ResultPage("speed", "Speed and scale",
               "The env against CartPole, the synthetic world from 1x to 250x its sessions, the reply parser, "
               "the backends' throughput and the embedding backend's two modes, each written by the script "
               "named above its output; see {doc}`/guides/scaling`.",
               ("env_speed.txt", "scaling/scaling.txt", "scaling/scaling.png", "parse_speed.txt",
                "llm_throughput.txt", "embedding_modes.txt")),
)


def _demoted(markdown: str) -> str:
    """A results file's Markdown with every heading one level lower, so the page keeps one title."""
    return re.sub(r"^(#{1,5}) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


def result_page_md(page: ResultPage, folder: Path) -> str:
    parts = [f"# {page.title}", "", page.intro, ""]
    for name in page.files:
        source = BENCHMARKS / name
        if not source.is_file():
            raise FileNotFoundError(f"{source}: a results page lists it but it is not committed; "
                                    f"rerun the benchmark or drop it from RESULT_PAGES in {__file__}")
        parts.append(f"Source: `benchmarks/{name}`")
        parts.append("")
        if source.suffix == ".png":
            image = f"{page.name}-{name.replace('/', '-')}"
            shutil.copyfile(source, folder / image)
            parts += [f"```{{image}} {image}", f":alt: {name}", "```", ""]
        elif source.suffix == ".md":
            parts += [_demoted(source.read_text(encoding="utf-8")).strip(), ""]
        else:
            parts += [f"## `{name}`", "", "```text", source.read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(parts)


def write_result_pages(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for page in RESULT_PAGES:
        _write_if_changed(folder / f"{page.name}.md", result_page_md(page, folder))
    toc = "\n".join(page.name for page in RESULT_PAGES)
    index = ("# Benchmark results\n\nEach page is written, when the documentation is built, from the results "
             "committed under `benchmarks/`. Every LLM in them is the documented simulated ranker unless a "
             "page says otherwise: they show what the environments measure, not an LLM's behaviour.\n\n"
             f"```{{toctree}}\n:maxdepth: 1\n\n{toc}\n```\n")
    _write_if_changed(folder / "index.md", index)


def _on_builder_inited(app: Sphinx) -> None:
    source = Path(app.srcdir)
    write_env_pages(source / "envs")
    write_result_pages(source / "results")


def _on_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    owner = name if what == "class" else None
    lines[:] = docstring_to_rst("\n".join(lines), sections=False, owner=owner).splitlines()


def _imported(target: str, module: str | None) -> tuple[Any, str] | None:
    """(object, module it was found in) for a dotted ``target``, looked up in ``module`` first."""
    for dotted in ([f"{module}.{target}"] if module else []) + [target]:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            found_in = ".".join(parts[:cut])
            try:
                for name in parts[cut:]:
                    obj = getattr(obj, name)
            except AttributeError:
                break
            return obj, found_in
    return None


def _on_missing_reference(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference that names a rec_gym object by another path than where it is documented.

    A re-exported name (``rec_gym.agents.evaluate``) resolves to the object's home
    (``rec_gym.agents.evaluation.evaluate``); a module constant or type alias without a docstring of
    its own (``CHUNK_VALUES``) links to the module that defines it. A name that exists nowhere, or
    outside rec_gym, stays unresolved and fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    found = _imported(target, node.get("py:module"))
    if found is None:
        return None
    obj, found_in = found
    domain = env.get_domain("py")
    home, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(home, str) and home.startswith("rec_gym") and isinstance(qualname, str):
        canonical = f"{home}.{qualname}"
        if canonical != target:
            resolved = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node,
                                           contnode)
            if resolved is not None:
                return resolved
    if found_in.startswith("rec_gym") and not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return domain.resolve_xref(env, node["refdoc"], app.builder, "mod", found_in, node, contnode)
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    # Before napoleon (priority 500), which reads the Google-style sections this leaves alone.
    app.connect("autodoc-process-docstring", _on_docstring, priority=400)
    app.connect("missing-reference", _on_missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
