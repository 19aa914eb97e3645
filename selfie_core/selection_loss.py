"""The patch-selection loss: pick each masked position's own patch among the image's masked ones.

For image b and masked position k, the query `u_b + pos_k` is scored against the features
of all M masked patches of the same image (the right one and M - 1 distractors). All B*M
queries are scored in one batched matmul, the paper's "efficient implementation of mask
prediction". Logits go to cross-entropy once (a public implementation applied softmax
first, a double softmax). Scores are scaled by 1/sqrt(d), as in attention, so the loss
starts near ln(M) whatever the width; the ranking is that of the plain dot product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SelectionResult:
    """loss: mean cross-entropy; accuracy: share of queries whose top score is their own patch;
    logits: (B, M, M), row k scores query k against the image's M masked patches."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    logits: torch.Tensor


def selection_logits(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Shape: queries (B, M, d), keys (B, M, d) -> (B, M, M)."""
    return torch.bmm(queries, keys.transpose(1, 2)) * (queries.shape[-1] ** -0.5)


def selection_loss(queries: torch.Tensor, keys: torch.Tensor) -> SelectionResult:
    """Batched loss: the target of query k is key k."""
    logits = selection_logits(queries, keys)
    b, m, _ = logits.shape
    target = torch.arange(m, device=logits.device).expand(b, m)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
    accuracy = (logits.argmax(dim=-1) == target).float().mean()
    return SelectionResult(loss=loss, accuracy=accuracy, logits=logits)


def selection_loss_reference(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """One position at a time: the obviously correct definition the batched form must equal."""
    b, m, d = queries.shape
    total = queries.new_zeros(())
    for i in range(b):
        for k in range(m):
            scores = torch.stack([queries[i, k] @ keys[i, j] for j in range(m)]) / math.sqrt(d)
            total = total - torch.log_softmax(scores, dim=0)[k]
    return total / (b * m)
