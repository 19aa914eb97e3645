"""The Selfie pretraining model: P encodes patches, A pools the visible ones, the loss selects."""

from __future__ import annotations

import torch
from torch import nn

from selfie_core.attention_pool import AttentionPool
from selfie_core.config import SelfieConfig
from selfie_core.masking import PatchMask
from selfie_core.patch_network import PatchNetwork
from selfie_core.patches import patchify
from selfie_core.selection_loss import SelectionResult, selection_loss


def gather_positions(feats: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Shape: feats (B, N, d), positions (B, K) -> (B, K, d)."""
    index = positions.unsqueeze(-1).expand(-1, -1, feats.shape[-1])
    return feats.gather(1, index)


class SelfieModel(nn.Module):
    """Pretraining network. The same P encodes visible patches (for A) and masked ones (keys)."""

    def __init__(self, config: SelfieConfig) -> None:
        super().__init__()
        self.config = config
        preset = config.model_preset
        self.patch_network = PatchNetwork(preset, config.stem)
        self.attention_pool = AttentionPool(preset, config.grid, self.patch_network.out_dim)

    def summarize(self, feats: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """u from projected patch features (B, N, hidden) and visible positions (B, V)."""
        vis = gather_positions(feats, visible)
        if self.config.pos_on_visible:
            vis = vis + self.attention_pool.position_embedding(visible).to(vis.dtype)
        return self.attention_pool(vis)

    def forward(self, images: torch.Tensor, mask: PatchMask) -> SelectionResult:
        """Shape: images (B, 3, H, W); mask positions (B, V) and (B, M)."""
        patches = patchify(images, self.config.grid)
        # One pass of P over all B*N patches: masked ones are the decoder's keys.
        feats = self.attention_pool.project(self.patch_network(patches))
        u = self.summarize(feats, mask.visible)
        keys = gather_positions(feats, mask.masked)
        queries = u.unsqueeze(1) + self.attention_pool.position_embedding(mask.masked).to(u.dtype)
        return selection_loss(queries, keys)
