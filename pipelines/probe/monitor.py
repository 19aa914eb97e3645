"""The in-loop representation monitor (solo-learn's and lightly's kNN monitor, with a
linear probe beside it): before the first step (the random-init baseline), every
`eval_every` pretraining steps and at the last, kNN and linear-probe accuracy of u and of
the trunk's features on a capped set of labeled images, so a run shows whether its
features improve, not only whether the pretext task is solved.

The probe is fit at each reading on the stop-gradient features of the cached train images
(L-BFGS on 512 rows: well under a second), not trained online beside every step: an online
head would need a forward of whole images at every step.

Cost: the images are read once, normalised and kept on the device; each call copies the
model twice (one reader per representation), re-estimates BatchNorm on the train images and
reads both sets: about 3 forward passes over (train + val) images, no backward. With 512 +
256 images against a 64-image step that is the price of ~12 steps' forwards, so at
`eval_every` = 500 a few percent of the run (measured figures: docs/RESULTS.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
from torch import nn

from pipelines.data.loader import ShardData
from pipelines.data.normalize import normalized_batches
from pipelines.probe.features import frozen_readers, probe_scores, read_features
from pipelines.training.steps import unwrap

MONITOR_TRAIN_IMAGES = 512
MONITOR_VAL_IMAGES = 256
_BATCH = 128

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def monitor_batches(
    data: ShardData, split: str, limit: int, image_size: int, device: torch.device
) -> Batches:
    """The first `limit` images of `split` (shard order, no augmentation), normalised on
    `device` and kept: read once per run, not once per evaluation."""
    loader = data.eval_loader(split, _BATCH, image_size=image_size)  # type: ignore[arg-type]
    batches, seen = [], 0
    for images, labels in normalized_batches(loader, data.manifest.mean, data.manifest.std, device):
        take = min(len(images), limit - seen)
        batches.append((images[:take], labels[:take]))
        seen += take
        if seen >= limit:
            break
    return batches


# The figures a reading shows in the progress line (its cost goes to MLflow only).
SHOWN = ("knn_u", "knn_trunk", "linear_u", "linear_trunk")


@torch.no_grad()
def monitor_scores(
    model: nn.Module,
    train_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    val_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int | None = None,
) -> dict[str, float]:
    """`knn_u`, `knn_trunk` (val images classified by their 20 nearest train images),
    `linear_u`, `linear_trunk` (a linear probe fit on the train images' features) and
    `monitor_seconds`, the call's cost. `model` (a SelfieModel, possibly DDP- or
    compile-wrapped) is not changed: the readers are copies, so training resumes with its
    own BatchNorm statistics and mode."""
    start = time.perf_counter()
    train_list, val_list = list(train_batches), list(val_batches)
    readers = frozen_readers(unwrap(model), (images for images, _ in train_list))
    train = read_features(readers, train_list)
    val = read_features(readers, val_list)
    if num_classes is None:
        num_classes = int(max(train.labels.max(), val.labels.max())) + 1
    scores = probe_scores(train, val, num_classes)
    scores["monitor_seconds"] = time.perf_counter() - start
    return scores


class RepresentationMonitor:
    """The monitor as the pretraining loop runs it: images cached once at construction,
    `maybe_run` at step 0, every `eval_every` steps and at the last step (rank 0 only)."""

    def __init__(
        self, data: ShardData, image_size: int, device: torch.device, eval_every: int
    ) -> None:
        self.eval_every = eval_every
        self.num_classes = data.manifest.num_classes
        self.train = monitor_batches(data, "train", MONITOR_TRAIN_IMAGES, image_size, device)
        self.val = monitor_batches(data, "val", MONITOR_VAL_IMAGES, image_size, device)

    def maybe_run(self, model: nn.Module, step: int, last: bool) -> dict[str, float] | None:
        """The scores when this step is due, else None."""
        if not (last or step % self.eval_every == 0):
            return None
        return monitor_scores(model, self.train, self.val, self.num_classes)
