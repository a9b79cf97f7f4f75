"""The runner tests' two-node Ray cluster (loopback, token auth, stopped by PID), reused."""

from pcd_testing.fixtures import ray_cluster

__all__ = ["ray_cluster"]
