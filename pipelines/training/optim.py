"""AdamW and its warmup + cosine schedule, built from an `OptimSpec`."""

from __future__ import annotations

import math

import torch
from torch import nn

from pipelines.specs import OptimSpec


def build_optimizer(model: nn.Module, spec: OptimSpec) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms, embeddings and `u0` (1-D or embedding rows)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(("_embed", ".u0")):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": spec.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=spec.lr)


def warmup_cosine(spec: OptimSpec, total_steps: int):
    """Multiplier of the peak learning rate at each step."""
    warmup = min(spec.warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cosine

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: OptimSpec, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(spec, total_steps))
