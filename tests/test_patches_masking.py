import pytest
import torch

from selfie_core.masking import num_masked, sample_masks
from selfie_core.patches import PatchGrid, patchify


@pytest.mark.parametrize(("size", "patch", "grid"), [(32, 8, 4), (224, 32, 7)])
def test_grid_shapes(size: int, patch: int, grid: int) -> None:
    g = PatchGrid(size, patch)
    assert (g.rows, g.cols, g.num_patches) == (grid, grid, grid * grid)
    out = patchify(torch.randn(2, 3, size, size), g)
    assert out.shape == (2, grid * grid, 3, patch, patch)


def test_patchify_is_row_major() -> None:
    img = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(1, 3, 32, 32)
    patches = patchify(img, PatchGrid(32, 8))
    # Position 5 is row 1, column 1.
    assert torch.equal(patches[0, 5], img[0, :, 8:16, 8:16])


def test_patch_size_must_divide_image() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        PatchGrid(32, 7)


def test_masks_differ_per_image_and_are_seeded() -> None:
    gen = torch.Generator().manual_seed(1)
    m = sample_masks(64, 16, 0.25, generator=gen)
    assert m.masked.shape == (64, 4) and m.visible.shape == (64, 12)
    assert len({tuple(r.tolist()) for r in m.masked}) > 1, "every image must get its own mask"
    full = torch.cat([m.visible, m.masked], dim=1).sort(dim=1).values
    assert torch.equal(full, torch.arange(16).expand(64, 16))
    again = sample_masks(64, 16, 0.25, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.masked, m.masked)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_mask_fraction_outside_open_interval(fraction: float) -> None:
    with pytest.raises(ValueError, match="mask fraction"):
        num_masked(16, fraction)
