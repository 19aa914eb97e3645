"""P as an ONNX graph: one patch in, one feature vector out, any batch size.

The graph takes `patches` (batch, 3, p, p), normalised as in training (the data's per-channel
mean/std from its manifest), and returns `features` (batch, d): P's stem, stages 1-3 and
global average pooling in eval mode. An image is cut into its grid of patches by the caller
(row-major, as `selfie_core.patches.patchify` does).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from pipelines.specs import SpecError
from selfie_core.config import SelfieConfig
from selfie_core.patch_network import PatchNetwork

# torch's exporter (torch.export based since 2.9) needs both; the `onnx` extra installs them.
ONNX_PACKAGES = ("onnx", "onnxscript")


class _OnePatch(nn.Module):
    """P over (batch, 3, p, p): one patch per row, so the graph is independent of the grid."""

    def __init__(self, net: PatchNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.net(patches.unsqueeze(1)).squeeze(1)


def require_onnx() -> None:
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise SpecError(
            f"ONNX export needs the {' and '.join(missing)} package(s): install them with "
            "`pip install 'selfie-pipelines[onnx]'` (or export --format torchvision)"
        )


def write_onnx(net: PatchNetwork, config: SelfieConfig, path: Path) -> None:
    """Trace `net` (already in eval mode) and write the graph with a dynamic batch axis."""
    require_onnx()
    assert config.patch_size is not None
    p = config.patch_size
    # Batch 2 while tracing: a batch of 1 invites the exporter to specialise the axis.
    example = torch.zeros(2, 3, p, p)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not ours
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            _OnePatch(net).eval(),
            (example,),
            str(path),
            input_names=["patches"],
            output_names=["features"],
            dynamic_shapes={"patches": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
