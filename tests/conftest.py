"""Shared fixtures: one local Ray per test session, real MLflow on SQLite in a temp dir."""

from __future__ import annotations

import os

import pytest
import torch

# Keep CPU tests predictable on the 2-core CI box.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
