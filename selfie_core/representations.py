"""The two image-level representations a pretrained Selfie model offers, read frozen.

- `u`: attention pooling A over *all* patches (none masked), with their row+column
  positions when the model adds them: the image summary the `hybrid` finetune network (the
  paper's "full encoder-2") classifies.
- `trunk`: P's ResNet trunk (stem + stages 1-3) run on the *whole* image and average-pooled:
  the stage-3 features of the `resnet50` finetune network (the paper's "full encoder-1")
  before stage 4.

BatchNorm statistics are re-estimated (`calibrate_batchnorm`) in the regime each
representation is read in: P's stored statistics were gathered on patches, which the trunk
does not see whole-image, and a random network's are untouched defaults. Finetuning
re-estimates them anyway; a probe that kept stale statistics would measure them, not the
weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
from torch import nn

from selfie_core.patches import patchify
from selfie_core.selfie_model import SelfieModel

Representation = Literal["u", "trunk"]
REPRESENTATIONS: tuple[Representation, ...] = ("u", "trunk")


def image_summary(model: SelfieModel, images: torch.Tensor) -> torch.Tensor:
    """u over all patches. Shape: (B, 3, H, W) -> (B, hidden)."""
    patches = patchify(images, model.config.grid)
    feats = model.attention_pool.project(model.patch_network(patches))
    every = torch.arange(feats.shape[1], device=feats.device).expand(feats.shape[0], -1)
    return model.summarize(feats, every)


def trunk_features(model: SelfieModel, images: torch.Tensor) -> torch.Tensor:
    """P's trunk on whole images, average-pooled. Shape: (B, 3, H, W) -> (B, patch_dim)."""
    images = images.contiguous(memory_format=torch.channels_last)
    return model.patch_network.trunk(images).mean(dim=(2, 3))


def representation(model: SelfieModel, name: Representation, images: torch.Tensor) -> torch.Tensor:
    """The named representation of `images` (see the module docstring)."""
    if name == "u":
        return image_summary(model, images)
    if name == "trunk":
        return trunk_features(model, images)
    raise ValueError(f"unknown representation {name!r}: choose one of {REPRESENTATIONS}")


@torch.no_grad()
def calibrate_batchnorm(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[torch.Tensor],
) -> int:
    """Replace every BatchNorm's running statistics by the exact mean and variance of what it
    sees while `forward` runs over `batches`; leave `model` in eval mode. Returns the images
    seen (0 leaves the statistics reset, which a caller should treat as an error)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts the same
        m.train()
    seen = 0
    try:
        for images in batches:
            forward(images)
            seen += len(images)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()
    return seen
