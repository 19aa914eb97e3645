"""Every file in configs/ is a spec the registry accepts, read the way `--config` reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli.main import parse_spec
from pipelines.specs import JOB_KINDS, PipelineSpec, load_spec_file
from selfie_core import SelfieConfig
from selfie_core.masking import num_masked

CONFIGS_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIGS_DIR.glob("*.y*ml"))


def test_configs_are_found() -> None:
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "imagenet_paper.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates_as_its_kind(path: Path) -> None:
    # The files without a `kind:` are the `selfie pipeline --config` files.
    kind = JOB_KINDS[load_spec_file(path).get("kind", "pipeline")]
    spec = parse_spec(kind, ["--config", str(path)])
    assert isinstance(spec, kind.spec)


def test_the_paper_plan_is_the_papers_imagenet_224_geometry() -> None:
    spec = parse_spec(JOB_KINDS["pipeline"], ["--config", str(CONFIGS_DIR / "imagenet_paper.yaml")])
    assert isinstance(spec, PipelineSpec)
    p = spec.pretrain
    model = SelfieConfig(p.preset, p.image_size or 0, p.patch_size, p.mask_fraction)
    assert (model.grid.rows, model.grid.cols, model.patch_size) == (7, 7, 32)
    assert model.stem == "imagenet" and model.model_preset.layers == 3
    assert num_masked(model.grid.num_patches, p.mask_fraction) == 12
    assert spec.sweep.fractions == [0.05, 0.1, 0.2, 1.0]
    assert spec.pretrain.jpeg_decode == "cpu"
