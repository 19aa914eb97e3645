"""Moving pretrained P (and A) weights into a finetune network, refusing anything ambiguous."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from selfie_core.config import SelfieConfig
from selfie_core.finetune_networks import HybridClassifier, ResNet50Classifier

# Pretrained-state prefix -> finetune-network prefix, per network class.
_PREFIXES: dict[type[nn.Module], dict[str, str]] = {
    ResNet50Classifier: {"patch_network.trunk.": "trunk."},
    HybridClassifier: {"patch_network.": "patch_network.", "attention_pool.": "attention_pool."},
}
_ATTENTION = "attention_pool."


class WeightTransferError(ValueError):
    """The checkpoint does not fit the network (other preset, geometry, or tensor shapes)."""


def _prefixes(network: nn.Module, reinit_attention: bool) -> dict[str, str]:
    prefixes = _PREFIXES.get(type(network))
    if prefixes is None:
        raise WeightTransferError(f"no pretrained weights map onto {type(network).__name__}")
    if reinit_attention:
        return {src: dst for src, dst in prefixes.items() if src != _ATTENTION}
    return prefixes


def pretrained_names(network: nn.Module, *, reinit_attention: bool = False) -> list[str]:
    """The finetune network's tensors (parameters and buffers) that `transfer_pretrained`
    fills, by name. Known without a checkpoint, so a scratch network can name the same set: a
    recipe for "the pretrained layers" then means the same layers for both inits."""
    prefixes = tuple(_prefixes(network, reinit_attention).values())
    return sorted(n for n in network.state_dict() if n.startswith(prefixes))


def transfer_pretrained(
    network: nn.Module,
    pretrained_state: Mapping[str, torch.Tensor],
    *,
    pretrained_config: SelfieConfig,
    network_config: SelfieConfig,
    reinit_attention: bool = False,
) -> list[str]:
    """Copy P's (and, for the hybrid, A's) tensors into the finetune `network`; return the
    network's names copied (`pretrained_names`).

    Parameters and buffers (BatchNorm statistics) are copied; the heads and ResNet stage 4
    keep their fresh initialisation, and so does the hybrid's A with `reinit_attention`
    (P kept, the attention pooling learnt afresh).
    """
    if pretrained_config.preset != network_config.preset:
        raise WeightTransferError(
            f"checkpoint was pretrained with preset {pretrained_config.preset!r} but the network "
            f"uses {network_config.preset!r}: finetune with --preset {pretrained_config.preset}"
        )
    if pretrained_config.stem != network_config.stem:
        raise WeightTransferError(
            f"checkpoint's patch size {pretrained_config.patch_size} implies a "
            f"{pretrained_config.stem!r} stem but the network has a {network_config.stem!r} stem"
        )
    prefixes = _prefixes(network, reinit_attention)
    target = network.state_dict()
    copied: dict[str, torch.Tensor] = {}
    for src_prefix, dst_prefix in prefixes.items():
        names = [n for n in pretrained_state if n.startswith(src_prefix)]
        if not names:
            raise WeightTransferError(f"checkpoint holds no tensors under {src_prefix!r}")
        for name in names:
            dst = dst_prefix + name[len(src_prefix) :]
            if dst not in target:
                raise WeightTransferError(f"checkpoint tensor {name!r} has no place in the network")
            src = pretrained_state[name]
            if src.shape != target[dst].shape:
                raise WeightTransferError(
                    f"tensor {name!r} has shape {tuple(src.shape)} in the checkpoint but "
                    f"{tuple(target[dst].shape)} in the network (different grid or preset?)"
                )
            copied[dst] = src
    missing = [
        n for n in target if any(n.startswith(p) for p in prefixes.values()) and n not in copied
    ]
    if missing:
        raise WeightTransferError(
            f"checkpoint lacks {len(missing)} tensors, e.g. {missing[0]!r}: was it pretrained "
            f"with an older definition of preset {network_config.preset!r} (the tiny preset's "
            "attention pooling went from 1 to 2 layers)? Pretrain again with this version"
        )
    network.load_state_dict(copied, strict=False)
    return sorted(copied)
