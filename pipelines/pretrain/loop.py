"""The pretraining loop (torchtitan's train loop): step, read the metrics every
`LOG_EVERY` steps, hand each reading and each step boundary to the caller's hooks.

Plain PyTorch: the Ray worker hooks in progress, MLflow and checkpoints; `selfie bench gpu`
hooks in its clock and its checks. Both run these very steps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from pipelines.data.normalize import to_device_normalized
from pipelines.pretrain.plan import PretrainPlan
from pipelines.pretrain.trainee import Trainee
from pipelines.training.steps import MetricWindow, pretrain_step_lean

LOG_EVERY = 5
"""Steps between reads of the metrics (the only host syncs of the loop)."""


@dataclass(frozen=True)
class Interval:
    """The metrics of the steps since the last reading, read at `step`."""

    step: int
    steps: int
    loss: float
    accuracy: float
    seconds: float
    images: int  # on this rank


class LoopHooks(Protocol):
    def status(self, step: int, text: str) -> None:
        """Something the user waits for that is not a step (compiling)."""

    def interval(self, reading: Interval, last: bool) -> None:
        """A reading of the metrics (every LOG_EVERY steps and at the last)."""

    def after_step(self, step: int, last: bool) -> None:
        """Every step boundary (checkpoints are decided here)."""


def run_steps(
    trainee: Trainee,
    plan: PretrainPlan,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    mean: tuple[float, ...] | list[float],
    std: tuple[float, ...] | list[float],
    hooks: LoopHooks,
    until: int | None = None,
) -> None:
    """Train from `trainee.step` to `until` (default: the plan's last step), one batch of
    `batches` per step."""
    until = plan.total_steps if until is None else until
    window = MetricWindow(trainee.device)
    grad_clip = plan.spec.optim.grad_clip
    first = trainee.compiled and trainee.step < until
    if first:
        hooks.status(trainee.step, "compiling the model (torch.compile): the first step waits")
    tick = time.perf_counter()
    while trainee.step < until:
        images, _ = next(batches)
        x = to_device_normalized(images, mean, std, trainee.device)
        metrics = pretrain_step_lean(
            trainee.model, x, trainee.generator, trainee.optimizer, trainee.scheduler, grad_clip
        )
        window.add(metrics)
        trainee.step += 1
        if first:
            first = False
            metrics.loss.item()  # the compile is done when its first step is
            hooks.status(trainee.step, f"compiled in {time.perf_counter() - tick:.1f} s")
        last = trainee.step == until
        if trainee.step % LOG_EVERY == 0 or last:
            n = window.n
            loss, accuracy = window.read()  # the one host sync of the interval
            seconds = time.perf_counter() - tick
            hooks.interval(
                Interval(trainee.step, n, loss, accuracy, seconds, n * images.shape[0]), last
            )
            tick = time.perf_counter()
        hooks.after_step(trainee.step, last)
