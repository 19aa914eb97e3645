"""One optimisation step and one evaluation pass, shared by pretraining and finetuning.

Plain functions over plain tensors: testable without Ray, reused by the Ray workers and the
benchmarks, so what is measured is what trains.
"""

from __future__ import annotations

import contextlib
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
    """The module inside a DDP wrapper (or the module itself)."""
    return getattr(model, "module", model)


def pretrain_step(
    model: nn.Module,
    images: torch.Tensor,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = None,
) -> StepMetrics:
    """Mask each image afresh (from `generator`), score every masked position, step."""
    core: SelfieModel = unwrap(model)  # type: ignore[assignment]
    grid = core.config.grid
    mask = sample_masks(
        images.shape[0], grid.num_patches, core.config.mask_fraction, generator, images.device
    )
    with autocast_for(images.device):
        out = model(images, mask)
    params = [p for p in model.parameters() if p.requires_grad]
    apply_gradients(out.loss, optimizer, scheduler, params, grad_clip)
    return StepMetrics(loss=out.loss.item(), accuracy=out.accuracy.item())


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
