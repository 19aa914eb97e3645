"""One optimisation step and one evaluation pass, shared by pretraining and finetuning.

Plain functions over plain tensors: testable without Ray, reused by the Ray workers and the
benchmarks, so what is measured is what trains.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfie_core.masking import sample_masks
from selfie_core.selfie_model import SelfieModel


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to its device with channels_last weights (matching its conv inputs)."""
    return model.to(device=device, memory_format=torch.channels_last)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU; full precision on CPU (bf16 matmuls are slow on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def apply_gradients(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    params: list[nn.Parameter] | None = None,
    grad_clip: float | None = None,
) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None and params is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


@dataclass
class StepMetrics:
    loss: float
    accuracy: float


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside torch.compile and DDP wrappers (or the module itself)."""
    while True:
        inner = model.__dict__.get("_orig_mod") or model.__dict__.get("_modules", {}).get(
            "_orig_mod"
        )
        if inner is None and isinstance(model, nn.parallel.DistributedDataParallel):
            inner = model.module
        if inner is None:
            return model
        model = inner


@dataclass
class StepTensors:
    """A step's metrics as detached scalars on the device: reading them is a host sync."""

    loss: torch.Tensor
    accuracy: torch.Tensor


def pretrain_step_lean(
    model: nn.Module,
    images: torch.Tensor,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = None,
) -> StepTensors:
    """Mask each image afresh (from `generator`, on its device), score every masked
    position, step. Nothing is read back to the host: the step queues and returns."""
    core: SelfieModel = unwrap(model)  # type: ignore[assignment]
    grid = core.config.grid
    mask = sample_masks(
        images.shape[0], grid.num_patches, core.config.mask_fraction, generator, images.device
    )
    with autocast_for(images.device):
        out = model(images, mask)
    params = [p for p in model.parameters() if p.requires_grad]
    apply_gradients(out.loss, optimizer, scheduler, params, grad_clip)
    return StepTensors(loss=out.loss.detach(), accuracy=out.accuracy.detach())


def pretrain_step(
    model: nn.Module,
    images: torch.Tensor,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = None,
) -> StepMetrics:
    """`pretrain_step_lean` read back at once (two host syncs): for tests and benches."""
    t = pretrain_step_lean(model, images, generator, optimizer, scheduler, grad_clip)
    return StepMetrics(loss=t.loss.item(), accuracy=t.accuracy.item())


class MetricWindow:
    """Running sums of step metrics kept on the device; `read` is the one host sync,
    called once per logging interval."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, device=device)
        self.n = 0

    def add(self, metrics: StepTensors) -> None:
        self.sums += torch.stack([metrics.loss.float(), metrics.accuracy.float()])
        self.n += 1

    def read(self) -> tuple[float, float]:
        """(mean loss, mean accuracy) since the last read; resets the window."""
        loss, accuracy = (self.sums / max(1, self.n)).tolist()
        self.sums.zero_()
        self.n = 0
        return loss, accuracy


_SYNC_OPS = {"item", "tolist", "__float__", "__int__", "__bool__", "numpy", "cpu"}


class HostSyncCounter(torch.overrides.TorchFunctionMode):
    """Counts tensor calls that make the host wait for the device (.item(), .tolist(),
    float(t), .cpu(), ...). Counted on any device, so a CPU run shows what a GPU run would
    wait for. Calls from inside torch.optim are left out: they read the optimizer's step
    counters, which live on the host even when the model is on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in _SYNC_OPS:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if not caller.startswith("torch.optim"):
                self.count += 1
        return func(*args, **(kwargs or {}))


def classify_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = None,
) -> StepMetrics:
    with autocast_for(images.device):
        logits = model(images)
    loss = F.cross_entropy(logits.float(), labels)
    params = [p for p in model.parameters() if p.requires_grad]
    apply_gradients(loss, optimizer, scheduler, params, grad_clip)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
    return StepMetrics(loss=loss.item(), accuracy=accuracy)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, batches, device: torch.device) -> StepMetrics:
    """Mean loss and accuracy over an iterable of (images, labels) batches."""
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        with autocast_for(device):
            logits = model(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(dim=-1) == labels).sum().item()
        total += labels.numel()
    model.train()
    if total == 0:
        return StepMetrics(loss=float("nan"), accuracy=float("nan"))
    return StepMetrics(loss=loss_sum / total, accuracy=correct / total)
