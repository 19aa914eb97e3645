"""What a Selfie model is, as stored beside its weights in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from selfie_core.masking import num_masked
from selfie_core.patches import PatchGrid, default_patch_size
from selfie_core.presets import ModelPreset, get_preset
from selfie_core.resnet_blocks import StemKind, stem_for_patch


@dataclass(frozen=True)
class SelfieConfig:
    """Preset, geometry and masking of one Selfie model.

    `pos_on_visible`: add the row+column embedding to visible patch features before A (the
    paper's figure shows positions on the encoder side too). With it off, A sees an
    unordered set and positions enter only through the queries `u + pos_j`.
    """

    preset: str = "tiny"
    image_size: int = 32
    patch_size: int | None = None
    mask_fraction: float = 0.25
    pos_on_visible: bool = True

    def __post_init__(self) -> None:
        get_preset(self.preset)
        if self.patch_size is None:
            object.__setattr__(self, "patch_size", default_patch_size(self.image_size))
        num_masked(self.grid.num_patches, self.mask_fraction)

    @property
    def model_preset(self) -> ModelPreset:
        return get_preset(self.preset)

    @property
    def grid(self) -> PatchGrid:
        assert self.patch_size is not None
        return PatchGrid(self.image_size, self.patch_size)

    @property
    def stem(self) -> StemKind:
        assert self.patch_size is not None
        return stem_for_patch(self.patch_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SelfieConfig:
        return cls(**data)
