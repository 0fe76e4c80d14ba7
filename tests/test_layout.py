"""The distribution's layout: one ``provml`` package, no bare top-level names, ruff clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_capture_and_api_install_only_under_provml(tmp_path):
    # A fresh interpreter outside the checkout sees only what is installed.
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps({n: u.find_spec(n) is not None for n in "
        "['provml.capture', 'provml.api', 'capture', 'api', 'ontology', 'migrations']}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    found = json.loads(out.stdout)
    assert found.pop("provml.capture") and found.pop("provml.api")
    assert not any(found.values()), found


def test_ontology_and_migrations_ship_as_package_data():
    from importlib.resources import files

    assert files("provml.ontology").joinpath("provml.ttl").is_file()
    assert files("provml.migrations").joinpath("env.py").is_file()


def test_console_script_prints_its_commands():
    exe = shutil.which("provml", path=str(Path(sys.executable).parent))
    assert exe is not None
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("demo", "db", "import", "export", "lineage", "query", "rdf"):
        assert command in out


def test_repository_is_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff is not None, "ruff is a dev dependency: pip install -e '.[dev]'"
    lint = subprocess.run([ruff, "check", str(REPO)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run([ruff, "format", "--check", str(REPO)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout


def test_top_level_provml_reexports_the_capture_api():
    import provml
    import provml.capture

    for name in provml._CAPTURE:
        assert name in provml.capture.__all__, name
        assert getattr(provml, name) is getattr(provml.capture, name)
