"""Finetune recipes for pretrained weights, no Ray: `linear` mode, a learning-rate multiplier
for the pretrained layers, LP-FT and a re-initialised A; each as the one finetune loop runs
it, and each refused in one sentence where it means nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.cli.main import parse_spec
from pipelines.data.loader import ShardData
from pipelines.ingest.driver import ingest
from pipelines.specs import JOB_KINDS, IngestSpec, OptimSpec, SpecError, SweepSpec, build_spec
from pipelines.specs.pipeline import PipelineSpec
from pipelines.sweep import finetune as ft
from pipelines.sweep.finetune import (
    FinetuneConfig,
    FinetunePlan,
    build_model,
    finetune,
    finetune_optimizer,
    plan_finetune,
    pretrained_lr_scales,
)
from pipelines.sweep.trial_setup import finetune_config
from pipelines.training.checkpoint import EncoderFile
from selfie_core import SelfieConfig, SelfieModel, pretrained_names, transfer_pretrained

CPU = torch.device("cpu")
LABELED = list(range(32))  # 2 steps an epoch at batch 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> ShardData:
    out = tmp_path_factory.mktemp("recipes") / "d"
    ingest(IngestSpec(source="synthetic:120", out=out, shard_max_count=60))
    return ShardData.open(out)


@pytest.fixture(scope="module")
def weights() -> EncoderFile:
    """Pretrained weights that differ from any fresh initialisation."""
    config = SelfieConfig()
    model = SelfieModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return EncoderFile(config, model.state_dict(), manifest_digest="x", step=1)


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        architecture="resnet50", init="scratch", lr=1e-2, weight_decay=0.05, epochs=2,
        batch_size=16, min_steps_per_epoch=2, warmup_epochs=0, seed=0,
    )  # fmt: skip
    return FinetuneConfig(**(base | kw))


def _encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor below the head, parameters and BatchNorm statistics."""
    state = model.state_dict().items()
    return {k: v.detach().clone() for k, v in state if not k.startswith("head.")}


def _head(model: nn.Module) -> torch.Tensor:
    return model.head.weight.detach().clone()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _start(cfg: FinetuneConfig, data: ShardData, weights=None) -> nn.Module:
    """The network a trial of `cfg` starts from (the build is seeded: the loop's own)."""
    return build_model(cfg, SelfieConfig(), data.manifest.num_classes, weights)


def _loop(monkeypatch, cfg: FinetuneConfig, data: ShardData, weights=None):
    """The loop's model (caught as the loop builds it) and its epochs, to read the model
    between them."""
    built: list[nn.Module] = []

    def catch(*args):
        built.append(build_model(*args))
        return built[-1]

    monkeypatch.setattr(ft, "build_model", catch)
    epochs = finetune(cfg, data, LABELED, SelfieConfig(), weights, CPU)
    next(epochs)
    return built[0], epochs


@pytest.mark.parametrize("kind", ["resnet50", "hybrid"])
def test_linear_mode_trains_the_head_alone_and_keeps_batchnorm_statistics(
    kind: str, data: ShardData, monkeypatch
) -> None:
    cfg = _cfg(architecture=kind, finetune_mode="linear")
    start = _start(cfg, data)
    model, epochs = _loop(monkeypatch, cfg, data)
    assert len(list(epochs)) == 1  # the second and last epoch
    assert any(k.endswith("running_mean") for k in _encoder_state(start)), "BN statistics"
    assert _same(_encoder_state(model), _encoder_state(start))
    assert not torch.equal(_head(model), _head(start))


def test_lp_ft_probes_first_then_trains_every_layer(data: ShardData, monkeypatch) -> None:
    cfg = _cfg(epochs=3, lp_ft_epochs=1)
    start = _start(cfg, data)
    model, epochs = _loop(monkeypatch, cfg, data)  # the probe epoch has run
    assert _same(_encoder_state(model), _encoder_state(start))
    assert not torch.equal(_head(model), _head(start))
    probed = _encoder_state(model)
    next(epochs)
    trained = _encoder_state(model)
    for name in ("trunk.stem.0.weight", "stage4.0.conv1.weight", "trunk.stem.1.running_mean"):
        assert not torch.equal(trained[name], probed[name]), name
    assert all(p.requires_grad for p in model.parameters())


def test_lp_ft_wraps_again_when_the_encoder_thaws(data: ShardData) -> None:
    """DDP registers the parameters that train when it wraps; after the probe the loop wraps
    the model again, now with every parameter training (else DDP would not sync them)."""
    seen: list[bool] = []

    def wrap(model: nn.Module) -> nn.Module:
        seen.append(all(p.requires_grad for p in model.parameters()))
        return model

    cfg = _cfg(epochs=3, lp_ft_epochs=1)
    list(finetune(cfg, data, LABELED, SelfieConfig(), None, CPU, wrap=wrap))
    assert seen == [False, True]


def test_pretrained_layers_get_their_own_learning_rate(weights: EncoderFile) -> None:
    config, scale = SelfieConfig(), 0.1
    cfg = _cfg(architecture="hybrid", init="selfie", pretrained_lr_scale=scale)
    selfie = build_model(cfg, config, 4, weights)
    copied = transfer_pretrained(
        selfie, weights.state_dict, pretrained_config=config, network_config=config
    )
    scales = pretrained_lr_scales(cfg, selfie)
    assert set(scales) == {n for n, _ in selfie.named_parameters() if n in copied}
    scratch_cfg = _cfg(architecture="hybrid", pretrained_lr_scale=scale)
    scratch = build_model(scratch_cfg, config, 4, None)
    assert set(pretrained_lr_scales(scratch_cfg, scratch)) == set(scales)  # the same layers
    optim = OptimSpec(lr=1e-2, weight_decay=0.05, warmup_steps=4, min_lr_ratio=0.0)
    plan = FinetunePlan(image_size=32, steps_per_epoch=5, epochs=2, optim=optim)
    optimizer, scheduler, _ = finetune_optimizer(selfie, plan, scales)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert len(group_of) == len(list(selfie.parameters()))
    decays = {n: group_of[id(p)]["weight_decay"] for n, p in selfie.named_parameters()}
    assert decays["head.weight"] == 0.05 and decays["head.bias"] == 0.0
    assert decays["patch_network.trunk.stem.0.weight"] == 0.05
    assert decays["attention_pool.u0"] == 0.0
    optimizer.step()
    scheduler.step()  # step 1 of a 4-step warmup: half the peak, in every group
    lrs = {n: group_of[id(p)]["lr"] for n, p in selfie.named_parameters()}
    for name, lr in lrs.items():
        expected = 0.5e-2 * (scale if name in copied else 1.0)
        assert lr == pytest.approx(expected), name


def test_a_tiny_pretrained_scale_leaves_the_pretrained_layers_nearly_still(
    data: ShardData, weights: EncoderFile, monkeypatch
) -> None:
    cfg = _cfg(architecture="hybrid", init="selfie", epochs=1, pretrained_lr_scale=1e-6)
    start = dict(_start(cfg, data, weights).named_parameters())
    model, _ = _loop(monkeypatch, cfg, data, weights)
    copied = set(pretrained_names(model))
    moved = {n: (p - start[n]).abs().max().item() for n, p in model.named_parameters()}
    assert max(moved[n] for n in copied if n in moved) < 1e-6
    assert moved["head.weight"] > 1e-3


def test_reinit_attention_keeps_p_and_starts_a_afresh(weights: EncoderFile) -> None:
    config = SelfieConfig()
    cfg = _cfg(architecture="hybrid", init="selfie", reinit_attention=True)
    model = build_model(cfg, config, 4, weights)
    scratch = build_model(_cfg(architecture="hybrid"), config, 4, None)
    state, pre = model.state_dict(), weights.state_dict
    p_names = [n for n in state if n.startswith("patch_network.")]
    a_names = [n for n in state if n.startswith("attention_pool.")]
    assert p_names and a_names
    assert all(torch.equal(state[n], pre[n]) for n in p_names)
    assert not any(torch.equal(state[n], pre[n]) for n in a_names if pre[n].is_floating_point())
    assert all(torch.equal(state[n], scratch.state_dict()[n]) for n in a_names)
    assert set(pretrained_names(model, reinit_attention=True)) == set(p_names)
    kept = build_model(_cfg(architecture="hybrid", init="selfie"), config, 4, weights)
    assert torch.equal(kept.attention_pool.u0, pre["attention_pool.u0"])


def test_a_probe_longer_than_the_trial_is_refused_when_planned(data: ShardData) -> None:
    cfg = _cfg(steps=4, lp_ft_epochs=2)  # 2 steps an epoch: 2 epochs in all
    with pytest.raises(ValueError, match=r"lp_ft_epochs \(2\) must be fewer than the trial's"):
        plan_finetune(cfg, data.manifest, SelfieConfig(), num_labeled=len(LABELED))
    plan = plan_finetune(_cfg(steps=6, lp_ft_epochs=2), data.manifest, SelfieConfig(), 32)
    assert (plan.epochs, plan.probe_epochs) == (3, 2)
    linear = plan_finetune(_cfg(finetune_mode="linear"), data.manifest, SelfieConfig(), 32)
    assert linear.probe_epochs == linear.epochs == 2


def test_the_recipe_reaches_the_trial_from_flags_yaml_and_rest() -> None:
    flags = ["--data", "d", "--inits", "scratch", "--architectures", "hybrid",
             "--finetune-mode", "full", "--pretrained-lr-scale", "0.1", "--lp-ft-epochs", "3",
             "--reinit-attention"]  # fmt: skip
    spec = parse_spec(JOB_KINDS["sweep"], flags)
    assert spec.recipe() == {
        "finetune_mode": "full", "pretrained_lr_scale": 0.1, "lp_ft_epochs": 3,
        "reinit_attention": True,
    }  # fmt: skip
    trial = {
        "architecture": "hybrid",
        "init": "scratch",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "seed": 1,
    }
    cfg = finetune_config(spec, trial)
    assert (cfg.pretrained_lr_scale, cfg.lp_ft_epochs, cfg.reinit_attention) == (0.1, 3, True)
    assert spec.model_dump()["pretrained_lr_scale"] == 0.1  # the sweep run's params
    pipeline = PipelineSpec.model_validate(
        {"data": "d", "sweep": {"finetune_mode": "linear", "inits": ["scratch"]}}
    )
    assert pipeline.sweep_spec([], "r").finetune_mode == "linear"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"finetune_mode": "linear", "lp_ft_epochs": 2}, "finetune_mode linear never trains"),
        ({"finetune_mode": "linear", "pretrained_lr_scale": 0.1}, "has no effect with"),
        ({"epochs": 5, "lp_ft_epochs": 5}, "lp_ft_epochs (5) must be fewer than epochs (5)"),
        ({"steps": 20, "lp_ft_epochs": 2, "min_steps_per_epoch": 10}, "use all 20 steps"),
        ({"architectures": ["resnet50"], "reinit_attention": True}, "has no hybrid"),
        ({"pretrained_lr_scale": 0}, "pretrained_lr_scale: Input should be greater than 0"),
        ({"pretrained_lr_scale": 11}, "pretrained_lr_scale: Input should be less than"),
        ({"lp_ft_epochs": -1}, "lp_ft_epochs: Input should be greater than or equal to 0"),
        ({"finetune_mode": "frozen"}, "finetune_mode: Input should be 'full' or 'linear'"),
    ],
)
def test_a_recipe_that_means_nothing_is_one_sentence(fields: dict, needle: str) -> None:
    with pytest.raises(SpecError) as caught:
        build_spec(SweepSpec, {"data": "d", "inits": ["scratch"], **fields})
    message = str(caught.value)
    assert needle in message and "\n" not in message, message


def test_trial_runs_carry_the_recipe(tmp_path) -> None:
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from pipelines.sweep.mlflow_callback import MlflowTrialRuns
    from pipelines.sweep.trial_plan import CELL_KEY

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("recipes", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(experiment).info.run_id
    spec = SweepSpec(data="d", inits=["scratch"], lp_ft_epochs=2, pretrained_lr_scale=0.5)
    callback = MlflowTrialRuns(uri, experiment, parent, 1, spec.recipe())
    cell = {"architecture": "hybrid", "init": "scratch", "fraction": 0.1, "seed": 0}
    trial = SimpleNamespace(trial_id="t1", config={CELL_KEY: cell, "lr": 0.1, "weight_decay": 0})
    params = client.get_run(callback._run_for(trial)).data.params
    assert params["lp_ft_epochs"] == "2" and params["pretrained_lr_scale"] == "0.5"
    assert params["finetune_mode"] == "full" and params["architecture"] == "hybrid"
