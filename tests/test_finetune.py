"""Finetuning without Ray: subsets, both inits, best-validation state, test read separately."""

import itertools

import pytest
import torch

from pipelines.data.labels import labeled_positions
from pipelines.data.loader import ShardData
from pipelines.ingest.driver import ingest
from pipelines.specs import IngestSpec
from pipelines.sweep.finetune import (
    FinetuneConfig,
    build_model,
    epoch_budget,
    evaluate_on_test,
    finetune,
    steps_per_epoch,
)
from pipelines.training.checkpoint import EncoderFile
from selfie_core import SelfieConfig, SelfieModel


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> ShardData:
    out = tmp_path_factory.mktemp("ft") / "d"
    ingest(IngestSpec(source="synthetic:400", out=out, shard_max_count=100))
    return ShardData.open(out)


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        architecture="resnet50", init="scratch", lr=1e-2, weight_decay=0.05, epochs=4,
        batch_size=32, min_steps_per_epoch=5, warmup_epochs=1, seed=0,
    )  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)


def test_small_subsets_still_get_min_steps() -> None:
    assert steps_per_epoch(10, _cfg()) == 5
    assert steps_per_epoch(1000, _cfg()) == 32


def test_budget_in_steps_has_a_floor_and_an_exact_form() -> None:
    # 10 labels: 5 steps an epoch; 4 epochs = 20 steps, lifted to the 100-step floor.
    assert epoch_budget(10, _cfg()) == 4
    assert epoch_budget(10, _cfg(min_steps=100)) == 20
    assert epoch_budget(1000, _cfg(min_steps=100)) == 4  # 4 x 32 = 128 steps already
    # `steps` is exact whatever the subset (rounded up to whole epochs).
    assert epoch_budget(10, _cfg(steps=52, min_steps=1000)) == 11
    assert epoch_budget(1000, _cfg(steps=64)) == 2


def test_patience_stops_when_validation_stalls(data: ShardData, monkeypatch) -> None:
    from pipelines.sweep import finetune as ft
    from pipelines.training.steps import StepMetrics

    vals = iter([0.5, 0.6, 0.6, 0.55, 0.7, 0.8])
    monkeypatch.setattr(
        ft, "evaluate_classifier", lambda *a, **k: StepMetrics(loss=1.0, accuracy=next(vals))
    )
    cfg = _cfg(epochs=6, patience=2, min_steps_per_epoch=1)
    results = list(finetune(cfg, data, [0, 1, 2, 3], SelfieConfig(), None, torch.device("cpu")))
    assert [r.epoch for r in results] == [1, 2, 3, 4]  # best at 2; 3 and 4 did not improve
    assert results[-1].last and not any(r.last for r in results[:-1])
    assert results[-1].best_epoch == 2 and results[-1].epochs_budget == 6


def test_scratch_learns_and_keeps_best_state(data: ShardData) -> None:
    results = list(finetune(_cfg(), data, None, SelfieConfig(), None, torch.device("cpu")))
    assert [r.epoch for r in results] == [1, 2, 3, 4]
    assert results[-1].last and results[-1].epochs_budget == 4
    best = max(results, key=lambda r: r.val_accuracy)
    assert results[-1].best_val_accuracy == best.val_accuracy
    assert best.val_accuracy > 0.5, "4 easy synthetic classes"
    acc = evaluate_on_test(
        _cfg(), data, SelfieConfig(), results[-1].best_state, torch.device("cpu")
    )
    assert 0.0 <= acc <= 1.0


@pytest.mark.parametrize("kind", ["resnet50", "hybrid"])
def test_selfie_init_copies_the_encoder(kind: str) -> None:
    config = SelfieConfig()
    pretrained = SelfieModel(config)
    with torch.no_grad():  # make pretrained weights differ from any fresh initialisation
        for p in pretrained.parameters():
            p.add_(1.0)
    encoder = EncoderFile(config, pretrained.state_dict(), manifest_digest="x", step=1)
    model = build_model(_cfg(architecture=kind, init="selfie"), config, 4, encoder)
    src = pretrained.patch_network.trunk.stem[0].weight
    dst = (model.trunk if kind == "resnet50" else model.patch_network.trunk).stem[0].weight
    assert torch.equal(src, dst)
    scratch = build_model(_cfg(architecture=kind), config, 4, None)
    s_dst = (scratch.trunk if kind == "resnet50" else scratch.patch_network.trunk).stem[0].weight
    assert not torch.equal(src, s_dst)


def test_selfie_init_without_weights_is_refused() -> None:
    with pytest.raises(ValueError, match="needs pretrained weights"):
        build_model(_cfg(init="selfie"), SelfieConfig(), 4, None)


def test_a_small_subset_streams_repeated_and_seeded(data: ShardData) -> None:
    """Batches of a 10-sample subset hold only its labels, repeat, and are the same for a
    seed (both inits train on the same batches)."""
    labels = data.labels("train")
    idx = labeled_positions(labels, 0.04, seed=0)
    assert idx is not None and len(idx) < 32

    def first_batches(seed: int) -> list[torch.Tensor]:
        loader = data.train_loader(32, num_workers=0, seed=seed, indices=idx)
        return [b for b, _ in itertools.islice(iter(loader), 3)]

    loader = data.train_loader(32, num_workers=0, seed=0, indices=idx)
    for _, batch_labels in itertools.islice(iter(loader), 3):
        assert sorted(set(batch_labels.tolist())) <= sorted({int(labels[i]) for i in idx})
    a, b, c = first_batches(0), first_batches(0), first_batches(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_finetune_streams_a_subset_through_loader_processes(data: ShardData) -> None:
    idx = labeled_positions(data.labels("train"), 0.2, seed=0)
    cfg = _cfg(epochs=1, min_steps_per_epoch=2)
    results = list(
        finetune(cfg, data, idx, SelfieConfig(), None, torch.device("cpu"), loader_workers=2)
    )
    assert len(results) == 1 and 0.0 <= results[0].val_accuracy <= 1.0


def test_unpatchable_model_size_is_refused_early(data: ShardData) -> None:
    from pipelines.specs.common import SpecError

    bad = SelfieConfig(image_size=32, patch_size=8)
    object.__setattr__(bad, "image_size", 36)  # as a config from elsewhere might say
    with pytest.raises(SpecError, match="image size 36"):
        next(finetune(_cfg(), data, None, bad, None, torch.device("cpu")))


def test_one_trial_setup_serves_the_epochs_and_the_test(data: ShardData) -> None:
    """The setup a trial does (spec validated, threads, device, data) is the one the test
    evaluation of its chosen weights does too."""
    from pipelines.specs import SweepSpec
    from pipelines.sweep.trial_setup import setup_trial

    sweep = SweepSpec(data=str(data.data_dir), inits=["scratch"], epochs=1, batch_size=32,
                      min_steps_per_epoch=2, min_steps=0, loader_workers=0)  # fmt: skip
    config = {"architecture": "resnet50", "init": "scratch", "lr": 1e-2, "weight_decay": 0.05,
              "seed": 0}  # fmt: skip
    threads = torch.get_num_threads()
    try:
        trial = setup_trial(
            sweep.model_dump(), config, [0, 1, 2, 3, 4, 5], SelfieConfig().to_dict()
        )
        assert trial.device.type == "cpu" and trial.labeled == 6
        assert torch.get_num_threads() == sweep.cpus_per_trial
        (result,) = list(trial.epochs(None))
        assert result.last and result.steps_per_epoch == 2
        assert 0.0 <= trial.test_accuracy(result.best_state) <= 1.0
    finally:
        torch.set_num_threads(threads)


def test_a_trial_resolves_its_plan_once_and_the_loop_follows_it(data: ShardData) -> None:
    """Image size, steps, epochs and the lr recipe resolved into one validated plan; on two
    ranks the steps of an epoch are split, the budget in epochs is not."""
    from pipelines.sweep.finetune import FinetunePlan, plan_finetune

    cfg = _cfg(epochs=2, min_steps_per_epoch=1, warmup_epochs=1)
    plan = plan_finetune(cfg, data.manifest, SelfieConfig(), num_labeled=100)
    assert (plan.image_size, plan.steps_per_epoch, plan.epochs) == (32, 4, 2)
    assert plan.optim.warmup_steps == 4 and plan.optim.lr == cfg.lr and plan.total_steps == 8
    two = plan_finetune(cfg, data.manifest, SelfieConfig(), num_labeled=100, world=2)
    assert (two.steps_per_epoch, two.epochs, two.optim.warmup_steps) == (2, 2, 2)
    with pytest.raises(ValueError, match="positive"):
        FinetunePlan(image_size=32, steps_per_epoch=0, epochs=2, optim=plan.optim)
    results = list(finetune(cfg, data, list(range(100)), SelfieConfig(), None, torch.device("cpu")))
    assert [(r.steps_per_epoch, r.epochs_budget) for r in results] == [(4, 2), (4, 2)]


def test_a_trial_asked_to_compile_trains_compiled_and_keeps_plain_weights(
    data: ShardData, monkeypatch
) -> None:
    """`compile` travels from the sweep spec to the loop (auto: off on a CPU); a compiled
    trial's chosen weights load into a plain network of the same architecture."""
    from pipelines.specs import SweepSpec
    from pipelines.sweep import finetune as ft
    from pipelines.sweep.trial_setup import finetune_config
    from pipelines.training.compile import is_compiled, resolve_compile

    config = {"architecture": "resnet50", "init": "scratch", "lr": 1e-2, "weight_decay": 0.05,
              "seed": 0}  # fmt: skip
    spec = SweepSpec(data=str(data.data_dir), inits=["scratch"], compile=True)
    assert finetune_config(spec, config).compile is True
    assert (
        finetune_config(SweepSpec(data=str(data.data_dir), inits=["scratch"]), config).compile
        == "auto"
    )
    assert not resolve_compile("auto", torch.device("cpu"))
    # Dynamo traces for real; the eager backend skips inductor's minutes of C++ on a CPU.
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: real_compile(model, backend="eager"))
    stepped = []
    real_step = ft.classify_step
    monkeypatch.setattr(
        ft,
        "classify_step",
        lambda model, *a: stepped.append(is_compiled(model)) or real_step(model, *a),
    )
    cfg = _cfg(epochs=1, min_steps_per_epoch=2, compile=True)
    (result,) = list(
        finetune(cfg, data, list(range(64)), SelfieConfig(), None, torch.device("cpu"))
    )
    assert stepped == [True, True]
    plain = build_model(cfg, SelfieConfig(), data.manifest.num_classes, None)
    plain.load_state_dict(result.best_state)  # no `_orig_mod.` prefixes
