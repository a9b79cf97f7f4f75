"""Pytest fixtures that more than one test folder uses (a conftest imports them by name)."""

from __future__ import annotations

import pytest

from pcd_testing.servers import RayCluster


@pytest.fixture(scope="session")
def ray_cluster():
    """Address and environment of a running two-node cluster."""
    cluster = RayCluster(head_cpus=1, worker_cpus=1, workers=1)
    try:
        yield {"address": cluster.address, "env": cluster.env}
    finally:
        cluster.stop()
