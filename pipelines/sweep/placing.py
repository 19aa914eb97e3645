"""A sweep trial's resources, resolved from the spec and the nodes that exist."""

from __future__ import annotations

from pipelines.placement import alive_nodes, worker_shape
from pipelines.specs import SweepSpec


def resolve_trial_shape(spec: SweepSpec, nodes=None) -> SweepSpec:
    """The spec with `gpus_per_trial` decided (1 when the cluster has GPUs) and checked:
    a trial (or, distributed, one of its workers) no node can host fails now, in one
    sentence, instead of pending forever."""
    nodes = alive_nodes() if nodes is None else nodes
    what = "a trial" if spec.workers_per_trial == 1 else "a trial's worker"
    shape = worker_shape(
        nodes, spec.workers_per_trial, spec.cpus_per_trial, spec.gpus_per_trial, what
    )
    return spec.model_copy(update={"gpus_per_trial": shape.gpus})
