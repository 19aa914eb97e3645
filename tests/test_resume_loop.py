"""Resume through the worker's own build / restore / loop functions, without Ray: a run
stopped at a checkpoint and continued from its saved state (written to disk and read
back) ends with the uninterrupted run's weights, bit for bit, with the loader in this
process and with 2 loader processes (the stream's position is continued, not reseeded).
The same through Ray Train with 2 workers: tests/test_pretrain_ray.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.data.loader import ShardData
from pipelines.ingest.driver import ingest
from pipelines.pretrain.loop import run_steps
from pipelines.pretrain.plan import PretrainPlan, plan_pretrain
from pipelines.pretrain.trainee import (
    Trainee,
    build_trainee,
    data_stream,
    own_rng_state,
    restore_trainee,
    snapshot,
)
from pipelines.specs import IngestSpec, OptimSpec, PretrainSpec
from pipelines.training.checkpoint import load_training_state, write_training_state
from pipelines.training.steps import unwrap

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> ShardData:
    out = tmp_path_factory.mktemp("resume") / "data"
    ingest(IngestSpec(source="synthetic:160", out=out, shard_max_count=40))
    return ShardData.open(out)


class Quiet:
    def status(self, step: int, text: str) -> None: ...

    def interval(self, reading, last: bool) -> None: ...

    def after_step(self, step: int, last: bool) -> None: ...


def _run(
    plan: PretrainPlan, data: ShardData, until: int | None, state: dict | None = None
) -> Trainee:
    """Rank 0 of 1 through the worker's own functions, from scratch or from a saved state."""
    trainee = build_trainee(plan, 0, CPU)
    if state is not None:
        restore_trainee(trainee, state, plan)
    batches = data_stream(trainee, plan, data, world=1)
    run_steps(trainee, plan, batches, data.manifest.mean, data.manifest.std, Quiet(), until)
    return trainee


def _differing(a: Trainee, b: Trainee) -> list[str]:
    one, other = unwrap(a.model).state_dict(), unwrap(b.model).state_dict()
    return [k for k in one if not torch.equal(one[k], other[k])]


@pytest.mark.parametrize("loader_workers", [0, 2])
def test_a_resumed_loop_equals_the_uninterrupted_one(
    data: ShardData, tmp_path: Path, loader_workers: int
) -> None:
    spec = PretrainSpec(
        data=str(data.data_dir), batch_size=16, epochs=100, max_steps=17,
        loader_workers=loader_workers, optim=OptimSpec(lr=3e-3, warmup_steps=2), seed=5,
        pos_on_visible=True,
    )  # fmt: skip
    plan = plan_pretrain(spec, data)
    assert plan.steps_per_epoch < 10  # the run crosses passes, and the stop is mid-pass

    whole = _run(plan, data, None)
    stopped = _run(plan, data, 11)
    write_training_state(tmp_path, snapshot(stopped, plan, [own_rng_state(stopped)]))
    resumed = _run(plan, data, None, load_training_state(tmp_path))
    assert resumed.resumed_from == 11 and resumed.step == whole.step == 17
    different = _differing(whole, resumed)
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_the_seed_decides_the_weights(data: ShardData) -> None:
    """One seed twice gives one result and another seed another (Ray Train's two-worker runs
    compare equal weights only, so a seed that reached nothing would pass there)."""

    def weights_after_3_steps(seed: int) -> Trainee:
        spec = PretrainSpec(
            data=str(data.data_dir), batch_size=16, max_steps=3, loader_workers=0,
            optim=OptimSpec(lr=3e-3, warmup_steps=1), seed=seed,
        )  # fmt: skip
        return _run(plan_pretrain(spec, data), data, None)

    first = weights_after_3_steps(5)
    assert not _differing(first, weights_after_3_steps(5))
    assert _differing(first, weights_after_3_steps(6))
