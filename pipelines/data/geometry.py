"""Which square size the loader produces, checked against the model's patching early.

The loader resizes/crops to the model's image size, so data stored at another size (or at
varied sizes: `Manifest.image_size` None) still trains. What cannot train is a size the
patch grid does not divide: say so in one sentence before any worker starts, not as a
shape error deep in a forward pass.
"""

from __future__ import annotations

from pipelines.specs.common import SpecError
from selfie_core.patches import default_patch_size


def model_image_size(
    stored: int | None, requested: int | None, patch_size: int | None = None
) -> int:
    """The model's image size: `requested`, else the stored size; checked for patching."""
    size = requested or stored
    if not size:
        raise SpecError(
            "the data has images of varied sizes: set image_size in the spec (e.g. 224)"
        )
    patch = patch_size or default_patch_size(size)
    if size <= 0 or size % patch:
        raise SpecError(
            f"image size {size} cannot be cut into {patch}x{patch} patches: use a size "
            f"divisible by the patch size (32 -> 8, 224 -> 32) or set patch_size"
        )
    return size
