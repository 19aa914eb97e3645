import numpy as np
import pytest

from selfie_core.subsets import labeled_subset


def _labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 10, size=2000)


def test_stratified() -> None:
    labels = _labels()
    idx = labeled_subset(labels, 0.1, seed=3)
    for cls in range(10):
        n_cls = int((labels == cls).sum())
        n_sub = int((labels[idx] == cls).sum())
        assert n_sub == int(0.1 * n_cls + 1e-9)


def test_nested_and_seeded() -> None:
    labels = _labels()
    small = set(labeled_subset(labels, 0.05, seed=1))
    big = set(labeled_subset(labels, 0.10, seed=1))
    assert small < big
    assert small != set(labeled_subset(labels, 0.05, seed=2))
    assert labeled_subset(labels, 1.0, seed=1) == list(range(len(labels)))


def test_fraction_outside_range() -> None:
    with pytest.raises(ValueError, match="labeled fraction"):
        labeled_subset([0, 1], 0.0, seed=0)
