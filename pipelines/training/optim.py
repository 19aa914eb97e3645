"""AdamW and its warmup + cosine schedule, built from an `OptimSpec`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from pipelines.specs import OptimSpec


@dataclass(frozen=True)
class EffectiveOptim:
    """The recipe resolved for one run's global batch: what actually trains."""

    global_batch_size: int
    effective_lr: float
    effective_warmup_steps: int

    def params(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def effective_optim(
    spec: OptimSpec, batch_size: int, workers: int, steps_per_epoch: int
) -> EffectiveOptim:
    """Peak LR and warmup steps for `workers` x `batch_size` images per step.

    lr_scaling none: lr; linear: lr x global/base; sqrt: lr x sqrt(global/base). Warmup in
    samples or epochs is turned into steps of this global batch (at least 1 when nonzero),
    else `warmup_steps` as given."""
    global_batch = batch_size * workers
    ratio = global_batch / spec.base_batch_size
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[spec.lr_scaling]
    if spec.warmup_samples is not None:
        warmup = math.ceil(spec.warmup_samples / global_batch)
    elif spec.warmup_epochs is not None:
        warmup = math.ceil(spec.warmup_epochs * steps_per_epoch)
    else:
        warmup = spec.warmup_steps
    return EffectiveOptim(
        global_batch_size=global_batch, effective_lr=spec.lr * factor, effective_warmup_steps=warmup
    )


def build_optimizer(
    model: nn.Module,
    spec: OptimSpec,
    lr: float | None = None,
    lr_scales: Mapping[str, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms, embeddings and `u0` (1-D or embedding rows).

    `lr_scales` multiplies the learning rate of the parameters it names (a finetune's
    pretrained layers): one param group per (decay, scale), each starting at its own peak,
    which the schedule (LambdaLR) then scales group by group."""
    peak = spec.lr if lr is None else lr
    scales = lr_scales or {}
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim <= 1 or name.endswith(("_embed", ".u0")))
        groups.setdefault((decays, scales.get(name, 1.0)), []).append(param)
    return torch.optim.AdamW(
        [
            {"params": params, "weight_decay": spec.weight_decay if decays else 0.0,
             "lr": peak * scale}
            for (decays, scale), params in groups.items()
            if params or scale == 1.0
        ],
        lr=peak,
    )  # fmt: skip


def warmup_cosine(spec: OptimSpec, total_steps: int, warmup_steps: int | None = None):
    """Multiplier of the peak learning rate at each step."""
    steps = spec.warmup_steps if warmup_steps is None else warmup_steps
    warmup = min(steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cosine

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    spec: OptimSpec,
    total_steps: int,
    warmup_steps: int | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(spec, total_steps, warmup_steps)
    )
