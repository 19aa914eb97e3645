"""P's stem and stages 1-3 under torchvision's ResNet-50 names.

Selfie pretrains the first three stages of ResNet-50; code outside this repository expects
them as `torchvision.models.resnet50()` weights. Our `ResNetTrunk` has the same tensors in the
same order (stride on the 3x3 convolution, projection shortcut of conv + BN), only named
differently, so the export is a renaming, checked against torchvision's own network.

Only a trunk with ResNet-50's exact layout maps: torchvision fixes the stem at 64 channels,
the blocks at 3/4/6, the expansion at 4 and the stem at 7x7 stride 2 + max-pool;
`width_per_group` scales only the inner width of each block, which none of the small presets
matches, so they are refused rather than mapped approximately.
"""

from __future__ import annotations

import torch
from torchvision.models import resnet50

from selfie_core.config import SelfieConfig
from selfie_core.resnet_blocks import ResNetTrunk

RESNET50_LAYOUT = {
    "stem_width": 64,
    "stage_blocks": (3, 4, 6),
    "stage_widths": (64, 128, 256),
    "expansion": 4,
}

# Our trunk's name prefix -> torchvision's; inside blocks only the shortcut is renamed.
_PREFIXES = (
    ("stem.0.", "conv1."),
    ("stem.1.", "bn1."),
    ("stage1.", "layer1."),
    ("stage2.", "layer2."),
    ("stage3.", "layer3."),
)


class TorchvisionExportError(ValueError):
    """The model's P has no exact counterpart in torchvision's ResNet-50."""


def check_resnet50_layout(config: SelfieConfig) -> None:
    """Raise `TorchvisionExportError` unless P is ResNet-50's stem and stages 1-3 exactly."""
    preset = config.model_preset
    found = {name: getattr(preset, name) for name in RESNET50_LAYOUT}
    if found != RESNET50_LAYOUT:
        raise TorchvisionExportError(
            f"preset {config.preset!r} (stem {preset.stem_width}, blocks "
            f"{'/'.join(map(str, preset.stage_blocks))}, widths "
            f"{'/'.join(map(str, preset.stage_widths))}, expansion {preset.expansion}) is not "
            "ResNet-50's layout (stem 64, blocks 3/4/6, widths 64/128/256, expansion 4), so its "
            "weights fit no torchvision resnet50: export the paper preset, or use --format onnx"
        )
    if config.stem != "imagenet":
        raise TorchvisionExportError(
            f"this P was pretrained on {config.patch_size} px patches with a 3x3 stride-1 stem, "
            "which torchvision's resnet50 (7x7 stride-2 stem + max-pool) does not have: export "
            "a model pretrained on 32 px patches, or use --format onnx"
        )


def resnet50_name(name: str) -> str:
    """The torchvision ResNet-50 name of one of our trunk's tensors (`stage1.0.shortcut.0.weight`
    -> `layer1.0.downsample.0.weight`)."""
    for ours, theirs in _PREFIXES:
        if name.startswith(ours):
            name = theirs + name[len(ours) :]
            break
    return name.replace(".shortcut.", ".downsample.")


def resnet50_state_dict(trunk: ResNetTrunk, config: SelfieConfig) -> dict[str, torch.Tensor]:
    """P's weights and BatchNorm statistics as a torchvision `resnet50` state dict.

    Loading it with `strict=False` leaves exactly `layer4.*` and `fc.*` missing and nothing
    unexpected. Every renamed tensor is checked against torchvision's network (built on the
    meta device: no memory), so a change on either side fails here, not in a user's code.
    """
    check_resnet50_layout(config)
    with torch.device("meta"):
        reference = resnet50().state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in trunk.state_dict().items():
        target = resnet50_name(name)
        if target not in reference or reference[target].shape != tensor.shape:
            raise TorchvisionExportError(
                f"trunk tensor {name!r} {tuple(tensor.shape)} has no place {target!r} in "
                "torchvision's resnet50"
            )
        out[target] = tensor.detach().to("cpu", copy=True).contiguous()
    return out
