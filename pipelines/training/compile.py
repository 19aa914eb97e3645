"""Whether a model runs under `torch.compile`: one resolution for pretraining and finetuning.

`compile: auto` compiles on a GPU, where the `paper` step at 224 px went from 4,344 to 6,353
images/s on an H200, and not on a CPU, where compiling costs minutes of a small run and a
C++ toolchain the machine may lack. `true`/`false` are obeyed as given.
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.specs.common import CompileChoice


def resolve_compile(choice: CompileChoice, device: torch.device) -> bool:
    """`auto`: on for CUDA, off elsewhere; a bool as given."""
    if choice == "auto":
        return device.type == "cuda"
    return bool(choice)


def compiled_for(model: nn.Module, choice: CompileChoice, device: torch.device) -> nn.Module:
    """`model` under `torch.compile` when `choice` resolves to on for `device`, else itself.
    Compiling is lazy: the first step pays for it (say so to the user there)."""
    return torch.compile(model) if resolve_compile(choice, device) else model


def is_compiled(model: nn.Module) -> bool:
    return "_orig_mod" in model.__dict__ or "_orig_mod" in model.__dict__.get("_modules", {})
