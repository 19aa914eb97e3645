"""Frozen features of images for both representations, and the scores read from them.

Plain PyTorch over batches of normalised images, so the offline probe (`driver.py`) and the
pretraining's in-loop monitor (`monitor.py`) read features and score them the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from pipelines.specs.errors import DataError
from selfie_core.knn import knn_accuracy
from selfie_core.linear_probe import fit_linear_probe
from selfie_core.representations import (
    REPRESENTATIONS,
    Representation,
    calibrate_batchnorm,
    representation,
)
from selfie_core.selfie_model import SelfieModel

PROTOCOLS = ("knn", "linear")


@dataclass
class SplitFeatures:
    """Features of one set of images, per representation, on the host: (n, d) each."""

    features: dict[Representation, torch.Tensor]
    labels: torch.Tensor  # (n,)


def frozen_readers(
    model: SelfieModel, calibration: Sequence[torch.Tensor] | Iterable[torch.Tensor]
) -> dict[Representation, SelfieModel]:
    """One eval-mode copy of `model` per representation, its BatchNorm statistics
    re-estimated on `calibration` images in that representation's regime (patches for u,
    whole images for the trunk: see `selfie_core.representations`). `model` is untouched."""
    batches = list(calibration)
    readers: dict[Representation, SelfieModel] = {}
    for name in REPRESENTATIONS:
        reader = copy.deepcopy(model)
        seen = calibrate_batchnorm(
            reader, lambda x, r=reader, n=name: representation(r, n, x), batches
        )
        if seen == 0:
            raise DataError("no training images to estimate BatchNorm statistics from")
        readers[name] = reader
    return readers


@torch.no_grad()
def read_features(
    readers: dict[Representation, SelfieModel],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> SplitFeatures:
    """Both representations of every (normalised images, labels) batch, in one pass."""
    feats: dict[Representation, list[torch.Tensor]] = {name: [] for name in readers}
    labels: list[torch.Tensor] = []
    for images, batch_labels in batches:
        for name, reader in readers.items():
            feats[name].append(representation(reader, name, images).float().cpu())
        labels.append(batch_labels.cpu())
    if not labels:
        raise DataError("a split to read features from is empty")
    return SplitFeatures({n: torch.cat(f) for n, f in feats.items()}, torch.cat(labels))


def knn_scores(train: SplitFeatures, val: SplitFeatures, num_classes: int) -> dict[str, float]:
    """kNN accuracy per representation, `knn_<representation>`: the cheap score the
    in-loop monitor logs."""
    return {
        f"knn_{name}": knn_accuracy(
            train.features[name], train.labels, val.features[name], val.labels, num_classes
        )
        for name in train.features
    }


def probe_scores(train: SplitFeatures, val: SplitFeatures, num_classes: int) -> dict[str, float]:
    """kNN and linear-probe accuracy per representation: `knn_u`, `linear_u`, ..."""
    scores = knn_scores(train, val, num_classes)
    for name in train.features:
        head = fit_linear_probe(train.features[name], train.labels, num_classes)
        scores[f"linear_{name}"] = head.accuracy(val.features[name], val.labels)
    return scores
