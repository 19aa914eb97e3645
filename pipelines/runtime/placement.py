"""Sizing Ray workers and trials from the nodes that exist, and refusing what no node can host.

Ray waits silently, forever, for a bundle no node can satisfy (8 workers asking for 9 CPUs
each on 8-CPU nodes). Here every request is checked against the alive nodes first: a shape
no single node can hold fails at once with one sentence naming the largest node. Defaults
come from the nodes that can host a worker (a node with 0 CPUs, like a KubeRay head, cannot),
and use GPUs when the cluster has them.

Pure functions over `NodeCapacity` lists (unit-tested on fabricated clusters); only
`alive_nodes` talks to Ray.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from pipelines.specs import SpecError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeCapacity:
    """One alive node's total resources, as Ray counts them."""

    node_id: str
    cpus: float
    gpus: float = 0.0
    address: str = ""
    custom: dict[str, float] = field(default_factory=dict)
    free_cpus: float | None = None  # not taken now (None: unknown, taken as all)

    @property
    def spare_cpus(self) -> float:
        return self.cpus if self.free_cpus is None else min(self.cpus, self.free_cpus)

    def describe(self) -> str:
        where = f" ({self.address})" if self.address else ""
        gpus = f", {self.gpus:g} GPUs" if self.gpus else ""
        return f"{self.cpus:g} CPUs{gpus}{where}"


@dataclass(frozen=True)
class WorkerShape:
    """What one worker (or one trial) asks Ray for."""

    cpus: int
    gpus: float

    def resources(self) -> dict[str, float]:
        out: dict[str, float] = {"CPU": self.cpus}
        if self.gpus:
            out["GPU"] = self.gpus
        return out


def alive_nodes() -> list[NodeCapacity]:
    """The alive nodes of the connected Ray cluster (`ray.nodes()`)."""
    import ray

    try:  # per-node free resources: not public API, so only a refinement of the defaults
        from ray._private.state import available_resources_per_node

        free = available_resources_per_node()
    except Exception:
        free = {}
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = dict(node.get("Resources") or {})
        nodes.append(
            NodeCapacity(
                node_id=str(node.get("NodeID", "")),
                cpus=float(res.pop("CPU", 0.0)),
                gpus=float(res.pop("GPU", 0.0)),
                address=str(node.get("NodeManagerAddress", "")),
                custom={k: float(v) for k, v in res.items() if not k.startswith("node:")},
                free_cpus=(
                    float(free[node["NodeID"]].get("CPU", 0.0))
                    if node.get("NodeID") in free
                    else None
                ),
            )
        )
    return nodes


def hosts(nodes: list[NodeCapacity]) -> list[NodeCapacity]:
    """Nodes that can host a worker: at least one CPU."""
    return [n for n in nodes if n.cpus >= 1]


def _largest(nodes: list[NodeCapacity]) -> NodeCapacity | None:
    return max(nodes, key=lambda n: (n.gpus, n.cpus), default=None)


def _fits(node: NodeCapacity, shape: WorkerShape) -> bool:
    return node.cpus >= shape.cpus and node.gpus >= shape.gpus


def slots(nodes: list[NodeCapacity], shape: WorkerShape) -> int:
    """How many workers of `shape` the nodes hold at once."""
    total = 0
    for n in nodes:
        if not _fits(n, shape):
            continue
        by_cpu = int(n.cpus // shape.cpus) if shape.cpus else 10**9
        by_gpu = int(n.gpus // shape.gpus) if shape.gpus else 10**9
        total += min(by_cpu, by_gpu)
    return total


def check_shape(nodes: list[NodeCapacity], shape: WorkerShape, what: str = "a worker") -> None:
    """Raise a one-sentence SpecError when no alive node can hold one `shape`."""
    if any(_fits(n, shape) for n in nodes):
        return
    largest = _largest(hosts(nodes)) or _largest(nodes)
    asked = f"{shape.cpus} CPUs" + (f" and {shape.gpus:g} GPUs" if shape.gpus else "")
    if largest is None:
        raise SpecError(f"{what} asks for {asked} but the Ray cluster has no alive node")
    raise SpecError(
        f"{what} asks for {asked} but no node can host it: the largest node has "
        f"{largest.describe()}"
    )


def default_gpus(nodes: list[NodeCapacity]) -> float:
    """One GPU per worker when any host has a GPU, else none."""
    return 1.0 if any(n.gpus >= 1 for n in hosts(nodes)) else 0.0


def default_cpus(nodes: list[NodeCapacity], workers: int, gpus: float) -> int:
    """The most CPUs per worker such that `workers` workers fit on the hosts at once.

    With GPUs, a worker's share of a GPU node's CPUs (node CPUs / workers it holds by GPU),
    the smallest over the GPU nodes so any of them can host one. Without a fit, 1 (the
    autoscaler may add nodes; a shape no node can hold is refused by `check_shape`).
    CPUs already taken (this job's own driver, other jobs) are left out where Ray says."""
    usable = [NodeCapacity(n.node_id, n.spare_cpus, n.gpus, n.address) for n in hosts(nodes)]
    usable = [n for n in usable if n.cpus >= 1]
    if gpus:
        gpu_nodes = [n for n in usable if n.gpus >= gpus]
        if not gpu_nodes:
            return 1
        return max(1, min(int(n.cpus // max(1, math.floor(n.gpus / gpus))) for n in gpu_nodes))
    if not usable:
        return 1
    for cpus in range(int(max(n.cpus for n in usable)), 0, -1):
        if slots(usable, WorkerShape(cpus, 0.0)) >= workers:
            return cpus
    return 1


def worker_shape(
    nodes: list[NodeCapacity],
    workers: int,
    cpus: int | None = None,
    gpus: float | None = None,
    what: str = "a worker",
) -> WorkerShape:
    """Resolve a worker's CPUs/GPUs (None: from the nodes) and check a node can host it.
    Fewer slots than workers only warns: an autoscaler may still add nodes."""
    g = default_gpus(nodes) if gpus is None else float(gpus)
    c = default_cpus(nodes, workers, g) if cpus is None else int(cpus)
    shape = WorkerShape(cpus=c, gpus=g)
    check_shape(nodes, shape, what)
    free = slots(nodes, shape)
    if free < workers:
        log.warning(
            "%d workers of %s fit on the %d alive nodes, %d asked: waiting for the cluster "
            "to grow", free, shape.resources(), len(nodes), workers,
        )  # fmt: skip
    return shape
