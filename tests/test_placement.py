"""Worker and trial shapes from the nodes that exist; impossible requests fail at once."""

from __future__ import annotations

import time

import pytest

from pipelines.runtime.placement import (
    NodeCapacity,
    WorkerShape,
    alive_nodes,
    check_shape,
    default_cpus,
    slots,
    worker_shape,
)
from pipelines.specs import PretrainSpec, SpecError, SweepSpec, build_spec
from pipelines.sweep.trial_resources import resolve_trial_shape

HEAD = NodeCapacity("head", cpus=0)
CPU8 = NodeCapacity("c8", cpus=8, address="10.0.0.2")
GPU8 = NodeCapacity("g8", cpus=96, gpus=8, address="10.0.0.9")


def test_head_with_no_cpus_hosts_nothing_and_defaults_fit_the_workers() -> None:
    nodes = [HEAD, CPU8, NodeCapacity("c8b", cpus=8)]
    # The old rule (cluster CPUs / workers) asked 16 // 8 = 2 (fits), but with a 1-CPU head
    # counted it was 17 // 1 = 17 for one worker, more than any node: now 8.
    assert worker_shape(nodes, 1) == WorkerShape(cpus=8, gpus=0)
    assert worker_shape(nodes, 2) == WorkerShape(cpus=8, gpus=0)
    assert worker_shape(nodes, 4) == WorkerShape(cpus=4, gpus=0)
    assert worker_shape(nodes, 5) == WorkerShape(cpus=2, gpus=0)  # 3+3 would not fit 5
    assert slots(nodes, WorkerShape(2, 0)) == 8
    assert default_cpus([HEAD], 1, 0) == 1
    # The job's driver holds one CPU of a node: the default leaves it out rather than wait.
    busy = [HEAD, NodeCapacity("c8", cpus=8, free_cpus=7), NodeCapacity("c8b", cpus=8)]
    assert worker_shape(busy, 2) == WorkerShape(cpus=7, gpus=0)


def test_gpus_are_used_when_the_cluster_has_them() -> None:
    nodes = [HEAD, CPU8, GPU8]
    shape = worker_shape(nodes, 8)
    assert shape == WorkerShape(cpus=12, gpus=1.0)  # 96 CPUs shared by the 8 GPU workers
    assert shape.resources() == {"CPU": 12, "GPU": 1.0}
    assert worker_shape(nodes, 2, gpus=0) == WorkerShape(cpus=48, gpus=0)  # both fit on g8
    assert worker_shape(nodes, 16, gpus=0.5).cpus == 6


def test_a_request_no_node_can_host_fails_in_one_sentence() -> None:
    with pytest.raises(SpecError, match=r"asks for 9 CPUs .* largest node has 8 CPUs \(10\.0"):
        worker_shape([HEAD, CPU8], 8, cpus=9)
    with pytest.raises(SpecError, match=r"asks for 1 CPUs and 1 GPUs .*largest node has 8 CPUs"):
        worker_shape([HEAD, CPU8], 2, cpus=1, gpus=1)
    with pytest.raises(SpecError, match="no alive node"):
        check_shape([], WorkerShape(1, 0))
    # Too few slots for all workers is not an error: an autoscaler may add nodes.
    assert worker_shape([CPU8], 20, cpus=1) == WorkerShape(cpus=1, gpus=0)


def test_spec_fields_and_the_retired_use_gpu() -> None:
    assert PretrainSpec(data="d").requested_gpus is None
    assert PretrainSpec(data="d", gpus_per_worker=0.5).requested_gpus == 0.5
    # An old config naming the retired field is told what replaces it, in one sentence.
    with pytest.raises(SpecError, match="use_gpu is no longer a field: set gpus_per_worker"):
        build_spec(PretrainSpec, {"data": "d", "use_gpu": True})


def test_trial_shape_defaults_to_a_gpu_when_there_is_one() -> None:
    spec = SweepSpec(data="d", inits=["scratch"])
    assert resolve_trial_shape(spec, [HEAD, GPU8]).gpus_per_trial == 1.0
    assert resolve_trial_shape(spec, [HEAD, CPU8]).gpus_per_trial == 0.0
    with pytest.raises(SpecError, match="a trial's worker asks for 16 CPUs"):
        resolve_trial_shape(spec.model_copy(update={"cpus_per_trial": 16, "workers_per_trial": 2}),
                            [HEAD, CPU8])  # fmt: skip


@pytest.mark.ray
def test_real_ray_reports_its_nodes(ray_session) -> None:
    nodes = alive_nodes()
    assert len(nodes) >= 1 and sum(n.cpus for n in nodes) >= 2
    assert all(not k.startswith("node:") for n in nodes for k in n.custom)
    tick = time.monotonic()
    with pytest.raises(SpecError, match="no node can host it"):
        worker_shape(nodes, 1, cpus=10_000)
    assert time.monotonic() - tick < 5
