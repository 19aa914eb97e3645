"""Labeled subsets: stratified by class, seeded, and nested across fractions.

For one seed each class's indices are shuffled once; a fraction takes a prefix of every
class's order, so the 5% subset lies inside the 10% subset and comparisons across fractions
differ only by the extra labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def labeled_subset(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> list[int]:
    """Sorted indices of a stratified subset holding `fraction` of each class (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labeled fraction must lie in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        order = members[rng.permutation(len(members))]
        take = max(1, math.floor(fraction * len(members) + 1e-9))
        chosen.append(order[:take])
    return sorted(int(i) for i in np.concatenate(chosen))
