"""A linear probe: a linear classifier trained on frozen, cached features.

The recipe is fixed, not searched, so the probe of a pretrained encoder and of a random one
are trained the same way: features standardised with the training set's per-dimension mean
and std (features of different encoders live on different scales), then multinomial
logistic regression with a small L2 penalty, fitted full-batch by L-BFGS from zero weights.
Full-batch L-BFGS on cached features is deterministic and converges in a few hundred
iterations for the feature sizes here (128-1024), as in the linear protocols of VISSL and
scikit-learn's LogisticRegression.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

PROBE_STEPS = 200
PROBE_WEIGHT_DECAY = 1e-3


@dataclass
class LinearProbe:
    """The fitted classifier with the standardisation it was trained under."""

    mean: torch.Tensor  # (d,)
    std: torch.Tensor  # (d,)
    weight: torch.Tensor  # (classes, d)
    bias: torch.Tensor  # (classes,)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Shape: (n, d) -> (n, classes)."""
        return F.linear((features.float() - self.mean) / self.std, self.weight, self.bias)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        predicted = self.logits(features).argmax(dim=1)
        return (predicted == labels.to(predicted.device)).float().mean().item()


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    steps: int = PROBE_STEPS,
    weight_decay: float = PROBE_WEIGHT_DECAY,
) -> LinearProbe:
    """Fit the probe on (n, d) features and their (n,) labels."""
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError("features must be (n, d) with one label per row")
    x = features.float()
    mean = x.mean(dim=0)
    std = x.std(dim=0).clamp_min(1e-6)  # a constant feature carries nothing: keep it at 0
    x = (x - mean) / std
    y = labels.long().to(x.device)
    weight = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(F.linear(x, weight, bias), y)
        loss = loss + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(mean, std, weight.detach(), bias.detach())
