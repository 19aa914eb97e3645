"""Training steps on the CPU are bit-reproducible at a fixed thread count above one: the
same seed gives the same weights. (The pretraining default on a 2-core node is 2 threads a
worker; the Ray test of reproducibility runs 1 thread a worker.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from pipelines.training.steps import pretrain_step_lean
from selfie_core import PRESETS, SelfieConfig, SelfieModel
from selfie_core.attention_pool import AttentionPool
from selfie_core.finetune_networks import build_finetune_network
from selfie_core.patches import PatchGrid


@contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Step = Callable[[nn.Module, torch.optim.Optimizer, int], None]


def _train_twice(build: Callable[[], nn.Module], step: Step) -> list[str]:
    """Names of the parameters that differ between two runs of 3 steps from seed 0."""
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(3):
            step(model, optimizer, i)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    first, second = weights
    return [n for n in first if not torch.equal(first[n], second[n])]


def test_pretraining_steps_with_two_threads_give_identical_weights() -> None:
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = torch.Generator()

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, i: int) -> None:
        masks.manual_seed(i)
        pretrain_step_lean(model, images, masks, optimizer)

    with threads(2):
        different = _train_twice(lambda: SelfieModel(SelfieConfig()), step)
    assert not different, f"differ run to run: {different}"


@pytest.mark.parametrize("kind", ["hybrid", "resnet50"])
def test_finetune_steps_with_two_threads_give_identical_weights(kind: str) -> None:
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(64) % 10

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images.roll(i, 0)), labels.roll(i, 0)).backward()
        optimizer.step()

    with threads(2):
        different = _train_twice(lambda: build_finetune_network(kind, SelfieConfig(), 10), step)
    assert not different, f"differ run to run: {different}"


def test_position_embedding_is_the_sum_of_its_row_and_column_exactly() -> None:
    pool = AttentionPool(PRESETS["paper"], PatchGrid(224, 32), in_dim=1024)
    positions = torch.arange(49).reshape(7, 7)
    expected = pool.row_embed[positions // 7] + pool.col_embed[positions % 7]
    assert torch.equal(pool.position_embedding(positions), expected)
