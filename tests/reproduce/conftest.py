"""The runner tests' two-node Ray cluster (loopback, token auth, stopped by PID), reused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_path = Path(__file__).parents[1] / "runner" / "conftest.py"
_spec = importlib.util.spec_from_file_location("reproduce_cluster_fixtures", _path)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

ray_cluster = _module.ray_cluster
