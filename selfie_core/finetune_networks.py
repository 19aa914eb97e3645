"""The two finetune networks the paper compares.

- `resnet50` (the paper's "full encoder-1"): a ResNet-50 over the whole image whose first
  three stages are P's trunk. Note the change of regime: P saw patches, this trunk sees
  whole images.
- `hybrid` (the paper's "full encoder-2"): P over patches, A over all of them, a linear head
  on u; the same regime as pretraining.
Both are built from a `SelfieConfig` so a checkpoint's config rebuilds them exactly.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from selfie_core.attention_pool import AttentionPool
from selfie_core.config import SelfieConfig
from selfie_core.patch_network import PatchNetwork
from selfie_core.patches import patchify
from selfie_core.resnet_blocks import ResNetTrunk, make_stage

FinetuneArchitecture = Literal["resnet50", "hybrid"]
"""Which of the two networks a finetune trains (a sweep's `architectures`)."""
ARCHITECTURES: tuple[FinetuneArchitecture, ...] = ("resnet50", "hybrid")
HEAD = "head"
"""The attribute holding the linear classification head in both networks; every other child
module is the encoder a linear probe freezes (where a selfie init puts the pretrained weights)."""


class ResNet50Classifier(nn.Module):
    """Stem + stages 1-3 (`trunk`, from P) + stage 4 + pooling + linear head."""

    def __init__(self, config: SelfieConfig, num_classes: int) -> None:
        super().__init__()
        preset = config.model_preset
        self.trunk = ResNetTrunk(preset, config.stem)
        self.stage4 = make_stage(
            self.trunk.out_channels, preset.stage4_width, preset.expansion, preset.stage4_blocks, 2
        )
        self.head = nn.Linear(preset.stage4_width * preset.expansion, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Shape: (B, 3, H, W) -> (B, num_classes)."""
        images = images.contiguous(memory_format=torch.channels_last)
        x = self.stage4(self.trunk(images))
        return self.head(x.mean(dim=(2, 3)))


class HybridClassifier(nn.Module):
    """ResNet-36 over patches, attention pooling over all of them, linear head on u."""

    def __init__(self, config: SelfieConfig, num_classes: int) -> None:
        super().__init__()
        self.config = config
        preset = config.model_preset
        self.patch_network = PatchNetwork(preset, config.stem)
        self.attention_pool = AttentionPool(preset, config.grid, self.patch_network.out_dim)
        self.head = nn.Linear(preset.hidden, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Shape: (B, 3, H, W) -> (B, num_classes)."""
        feats = self.attention_pool.project(self.patch_network(patchify(images, self.config.grid)))
        if self.config.pos_on_visible:
            positions = torch.arange(feats.shape[1], device=feats.device)
            feats = feats + self.attention_pool.position_embedding(positions).to(feats.dtype)
        return self.head(self.attention_pool(feats))


def build_finetune_network(
    architecture: FinetuneArchitecture, config: SelfieConfig, num_classes: int
) -> nn.Module:
    """The finetune network of `architecture`, freshly initialised."""
    if architecture == "resnet50":
        return ResNet50Classifier(config, num_classes)
    if architecture == "hybrid":
        return HybridClassifier(config, num_classes)
    raise ValueError(
        f"unknown finetune architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}"
    )
