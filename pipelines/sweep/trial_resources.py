"""A sweep trial's resources, resolved from the spec and the nodes that exist."""

from __future__ import annotations

from pipelines.runtime.placement import alive_nodes, worker_shape
from pipelines.specs import SpecError, SweepSpec, build_spec


def resolve_trial_shape(spec: SweepSpec, nodes=None) -> SweepSpec:
    """The spec with `gpus_per_trial` decided (1 when the cluster has GPUs) and checked:
    a trial (or, distributed, one of its workers) no node can host fails now, in one
    sentence, instead of pending forever."""
    if spec.workers_per_trial > 1 and spec.search.asha:
        raise SpecError(
            "asha stops trials on live per-epoch reports, which distributed trials give only "
            "at their end: use workers_per_trial 1 with asha"
        )
    nodes = alive_nodes() if nodes is None else nodes
    what = "a trial" if spec.workers_per_trial == 1 else "a trial's worker"
    shape = worker_shape(
        nodes, spec.workers_per_trial, spec.cpus_per_trial, spec.gpus_per_trial, what
    )
    return build_spec(SweepSpec, spec.model_dump() | {"gpus_per_trial": shape.gpus})


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """What Tune reserves for the trial function itself. A distributed trial's function only
    waits on its Train run, whose workers hold the CPUs/GPUs: it reserves no CPU (a token
    of memory, as Tune refuses an empty request)."""
    if spec.workers_per_trial > 1:
        return {"cpu": 0, "memory": 1 << 20}
    return {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial or 0}
