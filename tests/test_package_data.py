"""Every data file the shipped packages read is in the wheel: the images install the project
without -e, so a YAML file outside pyproject's package-data globs exists in `make test` (an
editable install) and is missing in the containers (the pcd-ablation preset, once)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_SUFFIXES = (".yaml", ".yml", ".json", ".mako", ".typed")


def _globs() -> dict[str, list[str]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["setuptools"]["package-data"]


def test_every_data_file_of_a_package_is_in_its_package_data() -> None:
    missing = []
    for package, globs in _globs().items():
        base = ROOT / package
        shipped = {p for g in globs for p in base.glob(g)}
        for path in base.rglob("*"):
            if path.suffix in DATA_SUFFIXES and "__pycache__" not in path.parts:
                if path not in shipped:
                    missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
    assert "search_spaces" in _globs()  # the check saw the specs' package
