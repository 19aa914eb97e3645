"""Selfie (Trinh, Luong, Le 2019) in plain PyTorch: no Ray, MLflow or file formats here.

Names are re-exported lazily so that `selfie_core.presets` (pure data) can be imported by
processes that never load torch, such as the control service validating a job spec.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ARCHITECTURES": "selfie_core.finetune_networks",
    "FinetuneArchitecture": "selfie_core.finetune_networks",
    "HybridClassifier": "selfie_core.finetune_networks",
    "ResNet50Classifier": "selfie_core.finetune_networks",
    "build_finetune_network": "selfie_core.finetune_networks",
    "PatchMask": "selfie_core.masking",
    "sample_masks": "selfie_core.masking",
    "PRESETS": "selfie_core.presets",
    "ModelPreset": "selfie_core.presets",
    "get_preset": "selfie_core.presets",
    "SelfieConfig": "selfie_core.config",
    "SelfieModel": "selfie_core.selfie_model",
    "labeled_subset": "selfie_core.subsets",
    "TorchvisionExportError": "selfie_core.torchvision_export",
    "resnet50_state_dict": "selfie_core.torchvision_export",
    "WeightTransferError": "selfie_core.weight_transfer",
    "pretrained_names": "selfie_core.weight_transfer",
    "transfer_pretrained": "selfie_core.weight_transfer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'selfie_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
