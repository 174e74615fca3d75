"""The built wheel is the whole program: installed alone, from any folder, it trains and finds its configs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import rec_gym

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project's wheel, built and installed with ``--no-deps`` into a target folder: ``(wheel, site)``."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(root / "dist"), str(PROJECT_ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = (root / "dist").glob("rec_gym-*.whl")
    site = root / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                              str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    return wheel, site


def _run(site: Path, cwd: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    # Only the installed copy is importable: no project folder on the path, a working folder without benchmarks/.
    env = {**os.environ, "PYTHONPATH": str(site), "REC_GYM_CACHE": str(cwd.parent / "cache")}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_wheel_carries_the_version_license_configs_and_hyperparameters(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith(f"rec_gym-{rec_gym.__version__}-")
    for name in ("rec_gym/agents/configs/quick.yaml", "rec_gym/agents/configs/full.yaml",
                 "rec_gym/agents/hyperparams/ppo.yml", "rec_gym/agents/hyperparams/a2c.yml",
                 "rec_gym/agents/hyperparams/dqn.yml"):
        assert name in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names)
    assert not any(name.startswith(("benchmarks/", "tests/")) for name in names)


def test_the_installed_command_trains_from_another_folder_and_writes_only_there(installed, tmp_path):
    _, site = installed
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    package_files = _files(site)
    done = _run(site, cwd, "import sys, rec_gym.cli; print('from', rec_gym.cli.__file__); sys.exit(rec_gym.cli.main())",
                "train", "--algo", "a2c", "--env", "Re2LLM-Synthetic-v0", "--timesteps", "256", "--val-every", "0",
                "--no-progress", "--env-kwargs", "n_train=300")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"from {site}" in done.stdout
    run = cwd / "runs" / "a2c-Re2LLM-Synthetic-v0-s0"
    assert (run / "model.zip").is_file() and (run / "config.json").is_file()
    assert {p.name for p in cwd.iterdir()} == {"runs"}
    assert _files(site) == package_files  # nothing written inside the installed package


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_the_installed_benchmark_finds_its_configs_by_name_and_writes_under_results(installed, tmp_path):
    _, site = installed
    code = ("from rec_gym.agents.benchmark import BenchmarkConfig; c = BenchmarkConfig.load('quick'); "
            "print(c.path); print(c.out_dir().resolve())")
    done = _run(site, tmp_path, code)
    assert done.returncode == 0, done.stderr[-2000:]
    path, out = done.stdout.split()
    assert Path(path) == site / "rec_gym" / "agents" / "configs" / "quick.yaml"
    assert Path(out) == tmp_path.resolve() / "results" / "quick"


def test_the_version_is_defined_once_and_the_citation_names_both_methods():
    import configparser

    import yaml

    setup = configparser.ConfigParser()
    setup.read(PROJECT_ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: rec_gym.__version__"
    citation = yaml.safe_load((PROJECT_ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT" and "version" not in citation
    titles = [reference["title"] for reference in citation["references"]]
    assert [title.split(":")[0] for title in titles] == ["Re2LLM", "RLRF4Rec"]
    assert "Copyright (c) 2026 rec_gym contributors" in (PROJECT_ROOT / "LICENSE").read_text(encoding="utf-8")
