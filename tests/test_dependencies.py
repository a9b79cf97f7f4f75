"""Every third-party module the shipped packages import is a declared runtime dependency.

The images install pyproject's `dependencies` only: a module that the dev extra happens to
bring (psutil, once) imports fine in `make test` and crashes the API container
(`make rehearse-compose` found that one)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pcd_core", "search_spaces", "service")
# Modules that only these files import, behind a fallback on ImportError. triton: the fused
# PCD kernel, used on CUDA, where PyPI's Linux torch requires it (691 MB: not for CPU images).
OPTIONAL_IMPORTS = {"triton": {"pcd_core/losses/_fused_pcd_kernels.py"}}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the files of the shipped packages that import it."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_norm(Requirement(d).name) for d in project["dependencies"]}


def undeclared(modules: dict[str, set[str]], runtime: set[str]) -> list[str]:
    providers = packages_distributions()
    problems = []
    for module, files in sorted(modules.items()):
        if module in sys.stdlib_module_names or module in (*PACKAGES, "__future__"):
            continue
        if files <= OPTIONAL_IMPORTS.get(module, set()):
            continue
        dists = providers.get(module, [])
        if not any(_norm(d) in runtime for d in dists):
            names = ", ".join(sorted(set(dists))) or "not installed"
            problems.append(f"{module} ({names}): {sorted(files)}")
    return problems


def test_every_import_of_the_shipped_packages_is_a_runtime_dependency() -> None:
    modules = imported_modules()
    assert {"torch", "fastapi", "ray"} <= set(modules)  # the scan sees the real imports
    assert not undeclared(modules, declared())


def test_an_optional_import_elsewhere_is_caught() -> None:
    modules = {"triton": {"pcd_core/losses/pcd.py"}}
    assert undeclared(modules, declared()) == [
        f"triton ({', '.join(packages_distributions().get('triton', [])) or 'not installed'}): "
        "['pcd_core/losses/pcd.py']"
    ]


def test_a_dev_only_import_is_caught() -> None:
    modules = {"psutil": {"service/control/supervisor.py"}, "json": {"x.py"}}
    assert undeclared(modules, declared() - {"psutil"}) == [
        "psutil (psutil): ['service/control/supervisor.py']"
    ]
