"""Which cells a sweep runs and how many trials that makes: the counting part of the sweep's
plan (`pipelines/sweep/trial_plan.py` builds the Tune spaces from it). Here, beside the spec
and free of Ray and numpy, so the control service refuses an oversized sweep with the same
count the sweep would run."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.specs.sweep import SweepSpec


@dataclass(frozen=True)
class Cell:
    architecture: str  # the finetuned network (resnet50 | hybrid)
    init: str
    pretrain_seed: int | None  # index of the pretrained weights; None for scratch
    fraction: float
    seed: int

    @property
    def setting_key(self) -> tuple[str, str, float]:
        """The cells that share one searched setting under `first-seed`."""
        return (self.architecture, self.init, self.fraction)

    def config(self) -> dict[str, Any]:
        return asdict(self)


def arms(inits: Iterable[str], pretrainings: int) -> list[tuple[str, int | None]]:
    """(init, pretraining seed) pairs: scratch once, selfie once per pretrained weights."""
    out: list[tuple[str, int | None]] = []
    for init in inits:
        out += [(init, None)] if init == "scratch" else [(init, k) for k in range(pretrainings)]
    return out


def all_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the sweep, selfie once per weights in `spec.pretrained`."""
    return [
        Cell(arch, init, pseed, fraction, seed)
        for arch, (init, pseed), fraction, seed in itertools.product(
            spec.architectures,
            arms(spec.inits, len(spec.pretrained)),
            spec.fractions,
            range(spec.seeds),
        )
    ]


def search_cells(spec: SweepSpec) -> list[Cell]:
    cells = all_cells(spec)
    if spec.search.scope == "every-seed":
        return cells
    return [c for c in cells if c.seed == 0 and (c.pretrain_seed or 0) == 0]


def replicate_cells(spec: SweepSpec) -> list[Cell]:
    searched = set(search_cells(spec))
    return [c for c in all_cells(spec) if c not in searched]


def trial_count(spec: SweepSpec) -> int:
    """How many trials the sweep runs: the search per searched cell, one per replicate."""
    per_cell = (
        len(spec.search.lr) * len(spec.search.weight_decay)
        if spec.search.mode == "grid"
        else spec.search.num_samples
    )
    return len(search_cells(spec)) * per_cell + len(replicate_cells(spec))


def cell_count(spec: SweepSpec) -> int:
    """`len(all_cells(spec))` by arithmetic, without building the cells: a hostile spec may
    name millions, and each cell runs at least one trial, so a caller can refuse it first."""
    arm_count = sum(1 if init == "scratch" else len(spec.pretrained) for init in spec.inits)
    return len(spec.architectures) * arm_count * len(spec.fractions) * spec.seeds
