import math

import pytest
import torch

from selfie_core import PRESETS, SelfieConfig, SelfieModel, sample_masks
from selfie_core.attention_pool import AttentionPool
from selfie_core.masking import PatchMask
from selfie_core.patches import PatchGrid
from selfie_core.selection_loss import selection_loss, selection_loss_reference


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("size", [32, 224])
def test_every_preset_runs_at_both_sizes(preset: str, size: int) -> None:
    cfg = SelfieConfig(preset=preset, image_size=size)
    model = SelfieModel(cfg)
    mask = sample_masks(2, cfg.grid.num_patches, 0.5)
    out = model(torch.randn(2, 3, size, size), mask)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert out.logits.shape == (2, mask.masked.shape[1], mask.masked.shape[1])


def test_decoupled_position_embeddings_count() -> None:
    grid = PatchGrid(224, 32)
    pool = AttentionPool(PRESETS["paper"], grid, in_dim=1024)
    assert pool.row_embed.shape == (7, 1024) and pool.col_embed.shape == (7, 1024)
    n_pos = pool.row_embed.numel() + pool.col_embed.numel()
    assert n_pos == 14 * 1024, "7 + 7 vectors, not 49"
    # position (r, c) = row[r] + col[c]
    pos = torch.tensor([3 * 7 + 5])
    assert torch.allclose(pool.position_embedding(pos)[0], pool.row_embed[3] + pool.col_embed[5])


def test_u0_is_learned() -> None:
    model = SelfieModel(SelfieConfig())
    assert model.attention_pool.u0.requires_grad
    mask = sample_masks(4, 16, 0.25)
    model(torch.randn(4, 3, 32, 32), mask).loss.backward()
    assert model.attention_pool.u0.grad is not None
    assert model.attention_pool.u0.grad.abs().sum() > 0


def test_masked_pixels_do_not_change_u() -> None:
    # Eval mode: BatchNorm uses running statistics, so patches are encoded independently.
    cfg = SelfieConfig()
    model = SelfieModel(cfg).eval()
    images = torch.randn(3, 3, 32, 32)
    mask = sample_masks(3, 16, 0.25, generator=torch.Generator().manual_seed(0))
    changed = images.clone()
    for b in range(3):
        for pos in mask.masked[b].tolist():
            r, c = divmod(pos, 4)
            changed[b, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] = torch.randn(3, 8, 8)
    with torch.no_grad():
        from selfie_core.patches import patchify

        def summary(x: torch.Tensor) -> torch.Tensor:
            feats = model.attention_pool.project(model.patch_network(patchify(x, cfg.grid)))
            return model.summarize(feats, mask.visible)

        assert torch.allclose(summary(images), summary(changed), atol=1e-6)
        # ... while changing a visible patch does change u (the test can fail).
        vis_pos = mask.visible[0, 0].item()
        r, c = divmod(vis_pos, 4)
        changed[0, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] += 1.0
        assert not torch.allclose(summary(images)[0], summary(changed)[0], atol=1e-6)


def test_batched_loss_matches_reference_loop() -> None:
    q = torch.randn(5, 6, 16, dtype=torch.float64)
    k = torch.randn(5, 6, 16, dtype=torch.float64)
    batched = selection_loss(q, k).loss
    assert abs(batched.item() - selection_loss_reference(q, k).item()) < 1e-5


def test_accuracy_counts_own_patch_wins() -> None:
    k = torch.eye(4).expand(2, 4, 4).clone()
    q = k * 10
    out = selection_loss(q, k)
    assert out.accuracy.item() == 1.0
    out = selection_loss(q.flip(1), k)
    assert out.accuracy.item() == 0.0


def test_loss_starts_near_chance() -> None:
    cfg = SelfieConfig(mask_fraction=0.5)
    model = SelfieModel(cfg)
    mask = sample_masks(32, 16, 0.5)
    loss = model(torch.randn(32, 3, 32, 32), mask).loss.item()
    assert abs(loss - math.log(8)) < 0.3


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        SelfieConfig(image_size=32, patch_size=5)
    with pytest.raises(ValueError, match="unknown preset"):
        SelfieConfig(preset="huge")


def test_masks_split_every_image_into_visible_and_masked_positions() -> None:
    mask: PatchMask = sample_masks(64, 16, 0.25, generator=torch.Generator().manual_seed(1))
    assert mask.masked.shape == (64, 4) and mask.visible.shape == (64, 12)
    both = torch.cat([mask.visible, mask.masked], dim=1).sort(dim=1).values
    assert torch.equal(both, torch.arange(16).expand(64, 16)), "disjoint and complete"
    assert len({tuple(m) for m in mask.masked.sort(dim=1).values.tolist()}) > 32, "per image"
    again = sample_masks(64, 16, 0.25, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.masked, mask.masked), "seeded"
