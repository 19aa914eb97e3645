"""Pretraining through Ray Train is reproducible on the same machine (local Ray, 2 workers,
`tiny`): a run whose worker is killed and which resumes from a checkpoint ends with the weights
of an uninterrupted run of the same spec and seed, bit for bit. That one comparison checks both
that two runs of one seed agree and that resume is faithful (two Ray Train runs where this
file had five: each costs ~20 s of start-up on 2 cores). The same build / restore / loop without
Ray, and that another seed gives other weights: tests/test_resume_loop.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from pipelines.ingest.driver import ingest
from pipelines.pretrain.driver import run_pretrain
from pipelines.specs import IngestSpec, OptimSpec, PretrainSpec
from pipelines.specs.settings import Settings
from pipelines.training.checkpoint import load_encoder
from tests.ray_cluster import train_worker_pids

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repro") / "data"
    ingest(IngestSpec(source="synthetic:256", out=out, shard_max_count=64))
    return out


def test_a_run_resumed_at_a_checkpoint_equals_the_uninterrupted_run(
    data_dir: Path, tmp_path: Path, ray_session
):
    """Rank 1 is killed after a checkpoint; Ray Train restarts both workers from it. Every
    rank continues its own generators and the data stream where it stopped, so the final
    weights equal an uninterrupted run's bit for bit (~6 steps a pass: 8 passes)."""
    settings = Settings(workdir=tmp_path)

    def spec(name: str) -> PretrainSpec:
        return PretrainSpec(
            data=str(data_dir), workers=2, cpus_per_worker=1, batch_size=16, loader_workers=0,
            epochs=100, max_steps=48, checkpoint_every=8, optim=OptimSpec(lr=3e-3, warmup_steps=2),
            seed=5, run_name=name, register_model=None, max_failures=2,
        )  # fmt: skip

    whole = run_pretrain(spec("whole"), settings)
    assert whole.resumed_from_step == 0 and whole.steps == 48
    outcome: dict = {}

    def drive() -> None:
        try:
            outcome["result"] = run_pretrain(spec("killed"), settings)
        except BaseException as exc:  # surfaced by the assertion below
            outcome["result"] = exc

    earlier = set(train_worker_pids())
    thread = threading.Thread(target=drive)
    thread.start()
    run_dir = Path(settings.run_storage(None, spec("killed").experiment)) / "killed"
    deadline = time.time() + 240

    def newest_step() -> int:
        return max((int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*")), default=0)

    # A third checkpoint folder: reports are barriers, so the earlier checkpoints are then
    # surely registered with the Train controller, which restarts from one of them.
    while time.time() < deadline and newest_step() < 24:
        time.sleep(0.05)
    assert newest_step() >= 24, "no checkpoints appeared"
    pids = [p for p in train_worker_pids() if p not in earlier]
    assert len(pids) == 2, pids
    os.kill(pids[1], signal.SIGKILL)
    thread.join(timeout=400)
    resumed = outcome["result"]
    assert not isinstance(resumed, BaseException), resumed
    assert 0 < resumed.resumed_from_step < 48 and resumed.steps == 48
    a, b = (
        load_encoder(whole.encoder_file).state_dict,
        load_encoder(resumed.encoder_file).state_dict,
    )
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"
