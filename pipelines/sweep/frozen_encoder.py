"""Freezing a finetune network below its head: `linear` finetuning, and LP-FT's probe epochs.

Frozen means no gradient (the optimizer leaves those weights, and their weight decay, alone)
and eval mode, so BatchNorm normalises with its running statistics and does not update them,
and dropout is off: the head then learns on fixed features.
"""

from __future__ import annotations

from torch import nn

from pipelines.training.steps import unwrap
from selfie_core.finetune_networks import HEAD


def encoder_parts(model: nn.Module) -> list[nn.Module]:
    """Every child module but the classification head (the model unwrapped from DDP)."""
    parts = [child for name, child in model.named_children() if name != HEAD]
    if len(parts) == len(list(model.children())):
        raise ValueError(f"{type(model).__name__} has no {HEAD!r} module to train alone")
    return parts


def freeze_encoder(model: nn.Module, frozen: bool) -> None:
    """Stop (or restart) gradients to everything but the head."""
    for part in encoder_parts(model):
        part.requires_grad_(not frozen)


def train_mode(model: nn.Module, encoder_frozen: bool) -> None:
    """`model` (or its DDP wrapper) in train mode, but a frozen encoder in eval mode."""
    model.train()
    if encoder_frozen:
        for part in encoder_parts(unwrap(model)):
            part.eval()
