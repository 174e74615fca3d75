"""The layers of setup.cfg's import-linter contract hold: no module imports from a layer above its own.

Layers, lowest first: storage | metrics | extras -> data -> llm -> knowledge -> feedback -> recsys
-> envs -> agents -> cli. ``lint-imports`` reads every import statement, those inside functions too.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONTRACT = "importlinter:contract:layers"


def _lint_imports(config: Path, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--config", str(config)],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_the_package_keeps_its_layers():
    done = _lint_imports(PROJECT_ROOT / "setup.cfg", PROJECT_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 1 kept, 0 broken." in done.stdout


def test_the_contract_refuses_an_upward_import_inside_a_function(tmp_path):
    # The same contract over a package of empty layers in which data imports envs lazily, as a helper
    # would if it were left in the wrong layer.
    parser = configparser.ConfigParser()
    parser.read(PROJECT_ROOT / "setup.cfg")
    layers = [name.strip() for line in parser[CONTRACT]["layers"].split("\n") for name in line.split("|")
              if name.strip()]
    for name in layers:
        (tmp_path / "rec_gym" / name).mkdir(parents=True)
        (tmp_path / "rec_gym" / name / "__init__.py").write_text("")
    (tmp_path / "rec_gym" / "__init__.py").write_text("")
    (tmp_path / "rec_gym" / "data" / "__init__.py").write_text("def load():\n    import rec_gym.envs\n")
    config = tmp_path / "setup.cfg"
    lint = configparser.ConfigParser()
    lint.read_dict({"importlinter": dict(parser["importlinter"]), CONTRACT: dict(parser[CONTRACT])})
    with open(config, "w") as fh:
        lint.write(fh)
    done = _lint_imports(config, tmp_path, pythonpath=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rec_gym.data is not allowed to import rec_gym.envs" in done.stdout
