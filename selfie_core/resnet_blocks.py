"""ResNet building blocks shared by the patch network P and the finetune ResNet-50.

Both networks hold the same `ResNetTrunk` under the same attribute names, so moving P's
weights into the finetune network is a copy of identically named tensors.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from selfie_core.presets import ModelPreset

StemKind = Literal["patch", "imagenet"]


def stem_for_patch(patch_size: int) -> StemKind:
    """Small patches (8x8) keep their resolution; 32x32 patches get the ImageNet stem."""
    return "imagenet" if patch_size >= 32 else "patch"


class Bottleneck(nn.Module):
    """ResNet-50's 1x1 -> 3x3 -> 1x1 block with a projection shortcut when shapes change."""

    def __init__(self, in_ch: int, width: int, expansion: int, stride: int) -> None:
        super().__init__()
        out_ch = width * expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        # Zero-init the last BN so each block starts as identity (Goyal et al. 2017).
        nn.init.zeros_(self.bn3.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def make_stage(in_ch: int, width: int, expansion: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(in_ch, width, expansion, stride)]
    layers += [Bottleneck(width * expansion, width, expansion, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def make_stem(kind: StemKind, width: int) -> nn.Sequential:
    if kind == "imagenet":
        return nn.Sequential(
            nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )


class ResNetTrunk(nn.Module):
    """Stem and ResNet-50's first three stages ("ResNet-36"): what Selfie pretrains.

    Shape: (B, 3, H, W) -> (B, preset.patch_dim, H', W').
    """

    def __init__(self, preset: ModelPreset, stem: StemKind) -> None:
        super().__init__()
        self.stem = make_stem(stem, preset.stem_width)
        ch = preset.stem_width
        stages = []
        for i, (blocks, width) in enumerate(
            zip(preset.stage_blocks, preset.stage_widths, strict=True)
        ):
            stages.append(make_stage(ch, width, preset.expansion, blocks, 1 if i == 0 else 2))
            ch = width * preset.expansion
        self.stage1, self.stage2, self.stage3 = stages
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(self.stem(x))))
