"""Weighted cosine k-nearest-neighbour classification of frozen features.

The kNN monitor of InstDisc (Wu et al. 2018) as solo-learn and lightly run it: each query
takes its k most cosine-similar training features, each neighbour votes for its label with
weight exp(similarity / temperature), and the class with the largest sum wins. It needs no
training and no hyperparameter search, so it reads representation quality directly: a
pretext task can be solved (high selection accuracy) while kNN stays at a random network's.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

KNN_K = 20
KNN_TEMPERATURE = 0.07


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predicted class of every query.

    Shape: train_features (N, d), train_labels (N,), query_features (Q, d) -> (Q,).
    Queries are scored `chunk_size` at a time, so memory is O(chunk_size * N), never Q * N.
    """
    if train_features.ndim != 2 or query_features.ndim != 2:
        raise ValueError("features must be 2-D: (samples, dim)")
    if train_features.shape[1] != query_features.shape[1]:
        raise ValueError(
            f"train features have dimension {train_features.shape[1]} but queries "
            f"{query_features.shape[1]}"
        )
    if len(train_features) != len(train_labels):
        raise ValueError("one label per training feature is needed")
    if k < 1 or temperature <= 0:
        raise ValueError("k must be at least 1 and the temperature positive")
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    labels = train_labels.long()
    out = []
    for start in range(0, len(query_features), chunk_size):
        query = F.normalize(query_features[start : start + chunk_size].float(), dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)  # (q, k)
        weights = (sims / temperature).exp()
        votes = torch.zeros(len(query), num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, labels[idx], weights)
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    num_classes: int,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
) -> float:
    """Fraction of queries whose kNN prediction is their label."""
    predicted = knn_predict(
        train_features, train_labels, query_features, num_classes, k=k, temperature=temperature
    )
    return (predicted == query_labels.to(predicted.device)).float().mean().item()
