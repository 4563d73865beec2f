"""The package as installed: quick to import, dependencies declared once for pip and conda."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

import whisperkit

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_lists_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    pinned = [line.replace(" ", "") for line in pip_section if not line.startswith("-e")]
    assert sorted(pinned) == sorted(dep.replace(" ", "") for dep in project["dependencies"])
    assert "-e ." in pip_section


def test_import_is_light():
    code = "import sys, whisperkit; print(' '.join(sorted(m for m in ('faster_whisper', 'ctranslate2', 'pandas', 'plotly', 'ipywidgets', 'pynvml', 'numpy', 'ray') if m in sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_public_names_resolve_and_no_submodule_shadows_them():
    import importlib
    import pkgutil
    import types

    for module in pkgutil.walk_packages(whisperkit.__path__, prefix="whisperkit."):
        if module.name != "whisperkit.__main__":
            importlib.import_module(module.name)  # importing sets package attributes
    for name in whisperkit.__all__:
        value = getattr(whisperkit, name)
        assert value is not None and not isinstance(value, types.ModuleType), name


def test_bundled_samples_ship_with_references():
    names = whisperkit.list_samples()
    assert "gettysburg" in names and sum(n.startswith("aesop_") for n in names) == 10
    data = ROOT / "whisperkit" / "data"
    assert all((data / f"{name}.txt").read_text().strip() for name in names)
    assert sum(p.stat().st_size for p in data.iterdir()) < 3 * 2**20


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("core.batching", "core.accuracy", "core.config", "measure.columns"):
        module = importlib.import_module(f"whisperkit.{name}")
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, name
