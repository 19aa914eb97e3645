"""Attention pooling A: a Transformer that summarises the visible patches into one vector u.

Positional embeddings are learned and decoupled: a row table and a column table
(rows + cols vectors, 7 + 7 = 14 for a 7x7 grid) summed per position, as in the paper.
`u0` is a learned vector (one public implementation fixed it at zero).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from selfie_core.patches import PatchGrid
from selfie_core.presets import ModelPreset


class AttentionPool(nn.Module):
    """Pools (B, V, hidden) patch features to (B, hidden) through `u0`'s output slot."""

    def __init__(self, preset: ModelPreset, grid: PatchGrid, in_dim: int) -> None:
        super().__init__()
        hidden = preset.hidden
        self.grid = grid
        # P's width and A's width coincide in the paper (1024); small presets may differ.
        self.input_proj: nn.Module = (
            nn.Identity() if in_dim == hidden else nn.Linear(in_dim, hidden, bias=False)
        )
        self.u0 = nn.Parameter(torch.randn(hidden) * 0.02)
        self.row_embed = nn.Parameter(torch.randn(grid.rows, hidden) * preset.pos_init_std)
        self.col_embed = nn.Parameter(torch.randn(grid.cols, hidden) * preset.pos_init_std)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden,
            nhead=preset.heads,
            dim_feedforward=preset.intermediate,
            dropout=preset.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=preset.norm_first,
        )
        self.layers = nn.TransformerEncoder(
            layer, num_layers=preset.layers, enable_nested_tensor=False
        )

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """Map P's features into A's width. Shape: (..., in_dim) -> (..., hidden)."""
        return self.input_proj(feats)

    def position_embedding(self, positions: torch.Tensor) -> torch.Tensor:
        """Row embedding + column embedding of row-major positions.

        Shape: (...,) -> (..., hidden).
        """
        rows = torch.div(positions, self.grid.cols, rounding_mode="floor")
        cols = positions % self.grid.cols
        # One-hot products, not `table[index]`: indexing's backward accumulates the many
        # repeats of each row in an order that depends on the threads (CPU) or on atomics
        # (CUDA), so the same seed gave different weights run to run. A matmul's reduction
        # order is fixed, and on a one-hot row it returns the table's values exactly.
        dtype = self.row_embed.dtype
        return (
            F.one_hot(rows, self.grid.rows).to(dtype) @ self.row_embed
            + F.one_hot(cols, self.grid.cols).to(dtype) @ self.col_embed
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Shape: (B, V, hidden) -> (B, hidden), the output at `u0`'s slot."""
        u0 = self.u0.to(feats.dtype).expand(feats.shape[0], 1, -1)
        out = self.layers(torch.cat([u0, feats], dim=1))
        return out[:, 0]
