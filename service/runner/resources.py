"""Whether a trial's resource request can ever be placed on the cluster.

Ray queues a task that no node can hold forever, silently: a study asking for a GPU on a
CPU-only cluster would sit in ``running`` without a word. The driver checks the request
against every node the cluster has (and every node type its autoscaler publishes) before the
first task, and fails the study with the reason instead. A cluster that adds nodes of types it
does not publish (PCD_CLUSTER_AUTOSCALES=true, e.g. KubeRay's autoscaler) is not checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray

from search_spaces.schema import StudySpec
from service.runner.errors import StudyError

log = logging.getLogger(__name__)
SHOWN_NODES = 8


@dataclass(frozen=True)
class NodeShape:
    """What one node (or one node type of the autoscaler) offers."""

    name: str
    cpus: float
    gpus: float

    def fits(self, cpus: float, gpus: float) -> bool:
        return self.cpus >= cpus and self.gpus >= gpus

    def describe(self) -> str:
        return f"{self.name}: {self.cpus:g} CPU, {self.gpus:g} GPU"


def infeasible(cpus: float, gpus: float, shapes: list[NodeShape]) -> str | None:
    """Why no node in ``shapes`` can hold a trial of ``cpus`` and ``gpus``; None if one can."""
    if any(shape.fits(cpus, gpus) for shape in shapes):
        return None
    nodes = "; ".join(s.describe() for s in shapes[:SHOWN_NODES])
    if len(shapes) > SHOWN_NODES:
        nodes += f"; and {len(shapes) - SHOWN_NODES} more"
    most_gpus = max((s.gpus for s in shapes), default=0.0)
    most_cpus = max((s.cpus for s in shapes), default=0.0)
    if gpus > 0 and most_gpus == 0:
        return f"resources.gpus={gpus:g}: no node of the cluster has a GPU (nodes: {nodes})"
    if gpus > most_gpus:
        return f"resources.gpus={gpus:g}: no node of the cluster has {gpus:g} GPUs (nodes: {nodes})"
    if cpus > most_cpus:
        return f"resources.cpus={cpus:g}: no node of the cluster has {cpus:g} CPUs (nodes: {nodes})"
    return (
        f"resources: no node of the cluster has {cpus:g} CPUs and {gpus:g} GPUs together "
        f"(nodes: {nodes})"
    )


def live_shapes(nodes: list[dict[str, Any]]) -> list[NodeShape]:
    """The alive nodes of ``ray.nodes()``."""
    return [
        NodeShape(
            name=str(n.get("NodeManagerAddress", n.get("NodeID", "?"))),
            cpus=float(n.get("Resources", {}).get("CPU", 0.0)),
            gpus=float(n.get("Resources", {}).get("GPU", 0.0)),
        )
        for n in nodes
        if n.get("Alive")
    ]


def _node_types() -> list[NodeShape]:
    """The node types an autoscaler publishes that it may add ([] if it publishes none)."""
    from ray._private.state import state

    try:
        config = state.get_cluster_config()
    except Exception as err:  # a private API: never block a study on it
        log.warning("could not read the cluster's node types: %s", err)
        return []
    groups = config.node_group_configs if config is not None else []
    return [
        NodeShape(
            name=f"node type {group.name}",
            cpus=float(group.resources.get("CPU", 0)),
            gpus=float(group.resources.get("GPU", 0)),
        )
        for group in groups
        if group.max_count != 0
    ]


def check_resources(spec: StudySpec, *, may_grow: bool = False) -> None:
    """StudyError if no node of the cluster (now, or of a type its autoscaler publishes) can
    ever hold one trial's ``spec.resources``. ``may_grow``: the cluster adds nodes of types
    it does not publish, so only a published node type can tell (else nothing is refused)."""
    types = _node_types()
    if may_grow and not types:
        log.info("a cluster that adds nodes of unknown types: resources not checked")
        return
    shapes = live_shapes(ray.nodes()) + types
    reason = infeasible(spec.resources.cpus, spec.resources.gpus, shapes)
    if reason is not None:
        raise StudyError(reason)
