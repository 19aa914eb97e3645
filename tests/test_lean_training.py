"""Scaling rules, the lean step (no per-step host sync, masks on the device) and
checkpoints written off the training thread."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
import torch

from pipelines.specs import OptimSpec, SpecError
from pipelines.training.async_checkpoint import AsyncCheckpointer, CheckpointSchedule
from pipelines.training.checkpoint import load_training_state, training_state
from pipelines.training.optim import build_optimizer, build_scheduler, effective_optim
from pipelines.training.rng_state import rank_rng_state
from pipelines.training.steps import (
    HostSyncCounter,
    MetricWindow,
    place,
    pretrain_step,
    pretrain_step_lean,
    unwrap,
)
from selfie_core.config import SelfieConfig
from selfie_core.masking import sample_masks
from selfie_core.selfie_model import SelfieModel


def test_effective_lr_and_warmup_follow_the_global_batch() -> None:
    spec = OptimSpec(lr=1e-3, lr_scaling="linear", base_batch_size=256, warmup_epochs=2)
    # 50,000 images, 64 per worker: 1 worker -> 781 steps/epoch, 32 workers -> 24.
    one = effective_optim(spec, 64, 1, 50_000 // 64)
    many = effective_optim(spec, 64, 32, 50_000 // (64 * 32))
    assert one.global_batch_size == 64 and many.global_batch_size == 2048
    assert one.effective_lr == pytest.approx(2.5e-4) and many.effective_lr == pytest.approx(8e-3)
    assert one.effective_warmup_steps == 1562 and many.effective_warmup_steps == 48
    sqrt = effective_optim(spec.model_copy(update={"lr_scaling": "sqrt"}), 64, 16, 10)
    assert sqrt.effective_lr == pytest.approx(1e-3 * math.sqrt(1024 / 256))
    by_samples = OptimSpec(warmup_samples=100_000)
    assert effective_optim(by_samples, 64, 1, 10).effective_warmup_steps == 1563
    assert effective_optim(by_samples, 64, 32, 10).effective_warmup_steps == 49
    assert effective_optim(OptimSpec(), 64, 32, 10).effective_lr == OptimSpec().lr
    assert effective_optim(OptimSpec(warmup_steps=7), 64, 32, 10).effective_warmup_steps == 7
    assert effective_optim(OptimSpec(), 8, 4, 10).params()["global_batch_size"] == "32"
    with pytest.raises(ValueError, match="not both"):
        OptimSpec(warmup_epochs=1, warmup_samples=10)


def test_the_optimizer_gets_the_effective_values() -> None:
    model = torch.nn.Linear(4, 4)
    recipe = effective_optim(OptimSpec(lr=1e-3, lr_scaling="linear", base_batch_size=32), 32, 4, 9)
    optimizer = build_optimizer(model, OptimSpec(), lr=recipe.effective_lr)
    scheduler = build_scheduler(optimizer, OptimSpec(), 100, warmup_steps=10)
    assert optimizer.param_groups[0]["initial_lr"] == pytest.approx(4e-3)
    for _ in range(9):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(4e-3)  # warmup ends at step 10


def _tiny():
    model = place(SelfieModel(SelfieConfig(preset="tiny", image_size=32)), torch.device("cpu"))
    return model, build_optimizer(model, OptimSpec())


def test_the_lean_step_never_waits_for_the_device() -> None:
    model, optimizer = _tiny()
    images, gen = torch.randn(4, 3, 32, 32), torch.Generator().manual_seed(0)
    with HostSyncCounter() as eager:
        pretrain_step(model, images, gen, optimizer)
    assert eager.count == 2  # .item() twice: what the loop paid every step before
    window = MetricWindow(torch.device("cpu"))
    with HostSyncCounter() as lean:
        for _ in range(5):
            window.add(pretrain_step_lean(model, images, gen, optimizer))
    assert lean.count == 0
    with HostSyncCounter() as read:
        loss, accuracy = window.read()
    assert read.count == 1 and loss > 0 and 0 <= accuracy <= 1 and window.n == 0


def test_masks_come_from_the_generators_device_and_unwrap_sees_through_compile() -> None:
    gen = torch.Generator(device="cpu").manual_seed(3)
    mask = sample_masks(2, 16, 0.25, gen, torch.device("cpu"))
    assert mask.masked.shape == (2, 4) and mask.visible.device.type == "cpu"
    again = sample_masks(2, 16, 0.25, torch.Generator().manual_seed(3))
    assert torch.equal(mask.masked, again.masked)
    model, _ = _tiny()
    assert unwrap(torch.compile(model)) is model


def test_checkpoint_schedule_by_steps_and_minutes() -> None:
    clock = [0.0]
    schedule = CheckpointSchedule(every=None, minutes=1.0, check_every=5, now=lambda: clock[0])
    clock[0] = 59
    assert not schedule.due(5)
    clock[0] = 61
    assert not schedule.due(6)  # time is only checked at step multiples of 5
    assert schedule.due(10)
    assert not schedule.due(15)
    steps = CheckpointSchedule(every=4, minutes=None, check_every=5)
    assert [s for s in range(1, 13) if steps.due(s)] == [4, 8, 12]
    seen = []
    ticks = iter([0.0, 100.0, 100.0])
    agreed = CheckpointSchedule(None, 1.0, 5, now=lambda: next(ticks))
    assert agreed.due(5, agree=lambda flag: seen.append(flag) or False) is False
    assert seen == [True]  # rank 0 thought it was due; the agreed answer (False) wins


def test_snapshot_is_written_in_a_thread_and_reported_later(tmp_path: Path) -> None:
    model, optimizer = _tiny()
    scheduler = build_scheduler(optimizer, OptimSpec(), 10)
    reports: list[tuple] = []
    writer_threads: list[str] = []

    def report(metrics, directory, step, final):
        reports.append((step, final, directory, threading.current_thread().name))
        writer_threads.append(directory and load_training_state(directory)["step"])

    def snapshot():
        return training_state(
            model=model, optimizer=optimizer, scheduler=scheduler, step=3, epoch=0,
            ranks=[rank_rng_state(torch.Generator())], loader={}, config=model.config,
            manifest_digest="d",
        )  # fmt: skip

    ckpt = AsyncCheckpointer(rank=0, lag=5, report_fn=report)
    ckpt.take(3, {"step": 3}, snapshot)
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # training goes on: the snapshot must not change
        for p in model.parameters():
            p.add_(1.0)
    ckpt.maybe_report(7)
    assert reports == []
    ckpt.maybe_report(8)
    assert [r[:2] for r in reports] == [(3, False)]
    assert reports[0][3] == threading.current_thread().name  # reported on the training thread
    saved = load_training_state(reports[0][2])
    assert all(torch.equal(saved["model"][k], v) for k, v in state_before.items())
    other = AsyncCheckpointer(rank=1, lag=5, report_fn=report)
    other.take(3, {"step": 3}, lambda: pytest.fail("only rank 0 snapshots"))
    other.flush(final=True)
    assert reports[-1][1:3] == (True, None)
    assert ckpt.stall_seconds < 5


def test_a_failed_write_surfaces_on_the_training_thread(tmp_path: Path) -> None:
    ckpt = AsyncCheckpointer(rank=0, lag=1, report_fn=lambda *a: None)
    ckpt.take(1, {}, lambda: {"bad": (lambda: 0)})  # a lambda cannot be pickled
    time.sleep(0.1)
    with pytest.raises(Exception):  # noqa: B017 - pickling error type varies
        ckpt.flush()


@pytest.mark.slow
def test_a_compiled_model_trains_and_checkpoints_plain_weights() -> None:
    model, optimizer = _tiny()
    compiled = torch.compile(model)
    gen = torch.Generator().manual_seed(0)
    try:
        metrics = pretrain_step_lean(compiled, torch.randn(4, 3, 32, 32), gen, optimizer)
    except Exception as exc:  # no compiler on this machine: the bench reports the same
        pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}")
    assert torch.isfinite(metrics.loss)
    keys = unwrap(compiled).state_dict().keys()
    assert not any(k.startswith("_orig_mod") for k in keys)


def test_compile_auto_is_on_for_cuda_and_off_on_a_cpu() -> None:
    from pipelines.specs import PretrainSpec, build_spec
    from pipelines.training.compile import resolve_compile

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile("auto", gpu) and not resolve_compile("auto", cpu)
    assert resolve_compile(True, cpu) and not resolve_compile(False, gpu)
    assert PretrainSpec(data="d").compile == "auto"
    assert build_spec(PretrainSpec, {"data": "d", "compile": "true"}).compile is True
    with pytest.raises(SpecError, match="compile"):
        build_spec(PretrainSpec, {"data": "d", "compile": "sometimes"})
