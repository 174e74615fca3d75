"""The documentation site builds with warnings as errors, has a page per env id, and its guides' code runs.

The guides' ``python`` blocks run in order, one namespace per guide, from the repository's root. A
block that needs a GPU, a server, data files or long training is a ``{code-block} python`` directive
whose ``:caption:`` says what it needs: it is skipped with that caption as the reason
(``docs/building.md`` states the convention).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra (pip install -e '.[docs]') builds the site")
pytest.importorskip("furo", reason="the docs extra (pip install -e '.[docs]') builds the site")
pytest.importorskip("myst_parser", reason="the docs extra (pip install -e '.[docs]') builds the site")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.md"))

_FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
_OPTION = re.compile(r"^:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")


@dataclass(frozen=True)
class CodeBlock:
    """One Python block of a guide: its source, and why it is not run (``None``: it runs)."""

    guide: str
    index: int
    line: int
    source: str
    skip_reason: str | None


def python_blocks(path: Path) -> list[CodeBlock]:
    """The guide's Python blocks in order: plain ```` ```python ```` fences and ``{code-block} python`` directives."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        info = match.group("info").strip()
        line = text.count("\n", 0, match.start()) + 1
        if info == "python":
            blocks.append(CodeBlock(path.name, len(blocks), line, match.group("body"), None))
        elif re.fullmatch(r"\{code-block\}\s+python", info):
            lines = match.group("body").splitlines()
            options = {}
            while lines and _OPTION.match(lines[0]):
                option = _OPTION.match(lines.pop(0))
                options[option.group("name")] = option.group("value").strip()
            caption = options.get("caption", "")
            if not caption:
                raise AssertionError(f"{path}:{line}: a code-block directive is a block the tests skip; give it a "
                                     ":caption: saying what it needs (a GPU, a server, long training), or make it "
                                     "a plain ```python fence that runs")
            blocks.append(CodeBlock(path.name, len(blocks), line, "\n".join(lines) + "\n", caption))
    return blocks


ALL_BLOCKS = [block for guide in GUIDES for block in python_blocks(guide)]


def registered_env_pages() -> list[str]:
    """Every id ``import rec_gym`` registers, and the PettingZoo module's name."""
    import gymnasium as gym

    import rec_gym  # noqa: F401  (registers the ids)

    ids = [env_id for env_id, spec in gym.registry.items() if str(spec.entry_point).startswith("rec_gym.")]
    return sorted(ids) + ["hint_team_v0"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs-html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stderr[-6000:]}"
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr[-6000:]
    return out


def test_every_registered_id_has_a_page_written_from_its_manual(site):
    from rec_gym.envs import COMPOSE_ENV_IDS, ENV_IDS, RLRF4REC_ENV_IDS

    pages = registered_env_pages()
    assert set(ENV_IDS) | set(COMPOSE_ENV_IDS) | set(RLRF4REC_ENV_IDS) <= set(pages)
    index = (site / "envs" / "index.html").read_text(encoding="utf-8")
    for env_id in pages:
        page = site / "envs" / f"{env_id}.html"
        assert page.is_file(), f"no page for {env_id}"
        html = page.read_text(encoding="utf-8")
        assert f"<h1>{env_id}" in html, env_id
        assert f'href="{env_id}.html"' in index, f"the env index does not link {env_id}"
        # Sections of the manual, and its Markdown tables rendered as tables, not as text with bars.
        assert "Action Space" in html and "Rewards" in html, env_id
        assert "<table" in html and "|---|" not in html, env_id
    synthetic = (site / "envs" / "Re2LLM-Synthetic-v0.html").read_text(encoding="utf-8")
    assert "dataset=&#x27;synthetic&#x27;" in synthetic or "dataset='synthetic'" in synthetic


def test_the_index_leads_to_own_llm_own_sessions_and_the_intervals(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    for target in ("guides/own_llm.html", "guides/own_sessions.html", "guides/benchmark.html",
                   "envs/index.html", "api/index.html", "results/index.html"):
        assert f'href="{target}' in index, target
    benchmark = (site / "guides" / "benchmark.html").read_text(encoding="utf-8")
    assert "excludes 0" in benchmark and "interquartile mean" in benchmark


def test_results_pages_show_the_committed_tables_and_plots(site):
    full = (site / "results" / "full.html").read_text(encoding="utf-8")
    assert "Best RL algorithm" in full and "<table" in full
    for image in re.findall(r'<img[^>]+src="([^"]+)"', full):
        assert (site / "results" / image).is_file(), image
    assert len(re.findall(r"<img", full)) == 2
    assert (site / "api" / "feedback.html").is_file()


@pytest.fixture(scope="module")
def guide_namespaces() -> dict[str, tuple[dict, set[int]]]:
    """Per guide: the namespace its blocks share, and the indices of the blocks already run in it."""
    return {}


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[f"{b.guide}:{b.line}" for b in ALL_BLOCKS])
def test_guide_code_block_runs(block, guide_namespaces, tmp_path_factory, monkeypatch):
    if block.skip_reason is not None:
        pytest.skip(f"{block.guide} line {block.line}: {block.skip_reason}")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("REC_GYM_CACHE", str(tmp_path_factory.getbasetemp() / "guides-cache"))
    # Blocks build on the ones above them in the same guide; run those first when this one runs alone.
    namespace, done = guide_namespaces.setdefault(block.guide, ({"__name__": "__guide__"}, set()))
    for earlier in ALL_BLOCKS:
        if earlier.guide == block.guide and earlier.index <= block.index and earlier.skip_reason is None \
                and earlier.index not in done:
            code = compile("\n" * (earlier.line) + earlier.source, str(DOCS / "guides" / earlier.guide), "exec")
            exec(code, namespace)
            done.add(earlier.index)
    assert block.index in done


def test_code_block_parser_reads_fences_and_captions(tmp_path):
    guide = tmp_path / "guide.md"
    guide.write_text("# g\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n\n"
                     "```{code-block} python\n:caption: needs a GPU\n\ny = 2\n```\n", encoding="utf-8")
    blocks = python_blocks(guide)
    assert [(b.source, b.skip_reason, b.line) for b in blocks] == [("x = 1\n", None, 3), ("\ny = 2\n", "needs a GPU", 11)]
    guide.write_text("```{code-block} python\n\ny = 2\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="caption"):
        python_blocks(guide)


def test_every_guide_is_in_the_site_and_has_a_running_block():
    assert {path.stem for path in GUIDES} == {"quickstart", "own_sessions", "own_llm", "custom_agent", "benchmark",
                                              "build_kb", "composition", "rlrf4rec", "scaling", "security"}
    running = {block.guide for block in ALL_BLOCKS if block.skip_reason is None}
    assert running >= {"quickstart.md", "own_sessions.md", "own_llm.md", "custom_agent.md", "benchmark.md"}


def test_docstring_markdown_becomes_restructuredtext():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from rec_gym_docs import docstring_to_rst
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    doc = """Intro.

    ## Info

    | key | meaning |
    |---|---|
    | ``rank`` | int; ``a \\| b`` |
    Each as `` Hint: <hint>``; see :meth:`action_masks`.
    - a list right after text
    """
    page = docstring_to_rst(doc, sections=True, owner="pkg.Env")
    assert "Info\n----\n" in page
    assert ".. list-table::\n   :header-rows: 1\n\n   * - key\n     - meaning\n   * - ``rank``\n     - int; ``a | b``" in page
    assert "``Hint: <hint>``" in page and ":meth:`~pkg.Env.action_masks`" in page
    assert "action_masks`.\n\n- a list" in page
    assert ".. rubric:: Info" in docstring_to_rst(doc, sections=False)
