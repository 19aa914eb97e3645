"""Every random stream one training process draws from, saved and restored as one state.

A resumed run equals an uninterrupted one only if every rank continues every stream it
draws from: torch's CPU generator (dropout, init), the CUDA generators when there are any,
numpy's and Python's global generators (libraries draw from them), and the rank's own mask
generator (on the training device). Each rank saves its own; none is re-seeded on resume.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def _numpy_state() -> list:
    """numpy's global state with its key array as a tensor (checkpoints load weights-only,
    which refuses numpy arrays)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), gauss]


def rank_rng_state(mask_generator: torch.Generator) -> dict:
    """This process's generators' states (host copies, safe to pickle)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
        "mask": mask_generator.get_state(),
        "mask_device": str(mask_generator.device),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rank_rng_state(state: dict, mask_generator: torch.Generator) -> bool:
    """Set this process's generators from `state`; False (and nothing changed) when the mask
    generator was saved on another kind of device, where its state does not apply."""
    if state["mask_device"] != str(mask_generator.device):
        return False
    mask_generator.set_state(state["mask"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return True
