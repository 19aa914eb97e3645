"""Which trials a sweep plans: arms, the search protocol, and the settings replicates get."""

from __future__ import annotations

import pytest

from pipelines.specs import PipelineSpec, SearchSpec, SpecError, SweepSpec
from pipelines.sweep.trial_plan import (
    CELL_KEY,
    Cell,
    all_cells,
    arms,
    cell_of,
    chosen_settings,
    replicate_cells,
    replicate_space,
    search_cells,
    search_space,
    trial_count,
    trial_params,
)


def _spec(scope: str, **kw) -> SweepSpec:
    base = dict(
        data="d", pretrained=["a.pt", "b.pt"], architectures=["resnet50", "hybrid"],
        fractions=[0.05, 1.0], seeds=3,
        search=SearchSpec(lr=[1e-3, 1e-2], weight_decay=[0.0, 0.05], scope=scope),
    )  # fmt: skip
    return SweepSpec(**(base | kw))


def test_scratch_is_one_arm_and_selfie_one_per_pretrained_encoder() -> None:
    assert arms(["scratch", "selfie"], 3) == [
        ("scratch", None), ("selfie", 0), ("selfie", 1), ("selfie", 2),
    ]  # fmt: skip
    assert arms(["selfie"], 1) == [("selfie", 0)]


def test_every_seed_searches_every_cell() -> None:
    spec = _spec("every-seed")
    cells = all_cells(spec)
    assert len(cells) == 2 * 3 * 2 * 3  # architectures x arms x fractions x seeds
    assert search_cells(spec) == cells and replicate_cells(spec) == []
    assert trial_count(spec) == len(cells) * 4


def test_first_seed_searches_seed_zero_of_the_first_encoder_only() -> None:
    spec = _spec("first-seed")
    searched = search_cells(spec)
    assert {(c.init, c.pretrain_seed, c.seed) for c in searched} == {
        ("scratch", None, 0), ("selfie", 0, 0),
    }  # fmt: skip
    replicates = replicate_cells(spec)
    assert len(searched) + len(replicates) == len(all_cells(spec))
    assert not set(searched) & set(replicates)
    # 2 architectures x 2 fractions x 2 searched arms x 4 settings, then one trial each for
    # the other 2 x 2 x (3 arms x 3 seeds - 2) cells.
    assert trial_count(spec) == 2 * 2 * 2 * 4 + 2 * 2 * 7


def test_replicates_train_the_setting_their_search_chose() -> None:
    spec = _spec("first-seed", architectures=["hybrid"], fractions=[0.05])
    space = search_space(spec, search_cells(spec))
    assert len(space[CELL_KEY]["grid_search"]) == 2
    searched = [
        ({CELL_KEY: c.config(), "lr": lr, "weight_decay": wd}, val)
        for c in search_cells(spec)
        for lr, wd, val in [(1e-3, 0.0, 0.7), (1e-2, 0.05, 0.9 if c.init == "selfie" else 0.6)]
    ]
    chosen = chosen_settings(searched)
    assert chosen == {
        ("hybrid", "scratch", 0.05): {"lr": 1e-3, "weight_decay": 0.0},
        ("hybrid", "selfie", 0.05): {"lr": 1e-2, "weight_decay": 0.05},
    }
    configs = replicate_space(replicate_cells(spec), chosen)[CELL_KEY]["grid_search"]
    by_arm = {(c["init"], c["pretrain_seed"], c["seed"]): c["lr"] for c in configs}
    assert by_arm == {
        ("scratch", None, 1): 1e-3, ("scratch", None, 2): 1e-3,
        ("selfie", 0, 1): 1e-2, ("selfie", 0, 2): 1e-2,
        ("selfie", 1, 0): 1e-2, ("selfie", 1, 1): 1e-2, ("selfie", 1, 2): 1e-2,
    }  # fmt: skip
    # A cell whose search failed entirely has no setting: its replicates are left out.
    assert replicate_space(replicate_cells(spec), {}) is None


def test_trial_params_flattens_the_cell() -> None:
    flat = trial_params({CELL_KEY: {"architecture": "hybrid", "seed": 1}, "lr": 0.1})
    assert flat == {"architecture": "hybrid", "seed": 1, "lr": 0.1}
    plain = {"architecture": "resnet50", "lr": 0.1}
    assert trial_params(plain) == plain


def test_one_weights_reference_is_a_list_of_one_and_selfie_needs_one() -> None:
    assert len(SweepSpec(data="d", pretrained="enc.pt").pretrained) == 1
    assert SweepSpec(data="d", inits=["scratch"]).pretrained == []
    with pytest.raises(ValueError, match="needs pretrained weights"):
        SweepSpec(data="d", pretrained=[])


def test_random_draws_are_seeded_and_the_same_for_every_cell() -> None:
    spec = _spec("every-seed", search=SearchSpec(mode="random", num_samples=3, lr=[3e-4, 1e-2],
                                                  weight_decay=[0.0, 0.1], seed=7))  # fmt: skip
    space = search_space(spec, search_cells(spec))
    assert "lr" not in space
    draws = space["setting"]["grid_search"]
    assert len(draws) == 3 and len({d["lr"] for d in draws}) == 3
    assert all(3e-4 <= d["lr"] <= 1e-2 and 0 <= d["weight_decay"] <= 0.1 for d in draws)
    assert search_space(spec, search_cells(spec))["setting"] == space["setting"]
    assert trial_count(spec) == len(all_cells(spec)) * 3
    flat = trial_params({CELL_KEY: {"init": "scratch"}, "setting": draws[0]})
    assert flat == {"init": "scratch", **draws[0]}


def test_a_selfie_config_without_weights_index_is_refused_in_one_sentence() -> None:
    """Trial configs of sweeps saved by an older version carried no index: resuming one is
    refused with what to do, not a guess and not a traceback."""
    old = {"architecture": "hybrid", "init": "selfie", "fraction": 0.05, "seed": 0, "lr": 1e-3}
    with pytest.raises(SpecError, match="run the sweep again without resume"):
        cell_of(old)
    assert cell_of(old | {"pretrain_seed": 1}) == Cell("hybrid", "selfie", 1, 0.05, 0)
    assert cell_of(old | {"init": "scratch"}).pretrain_seed is None


def test_a_config_naming_the_architecture_encoder_is_refused_in_one_sentence() -> None:
    """Trial configs of sweeps saved before the finetuned network's kind was called its
    architecture name it `encoder`: resuming one is refused in one sentence, in the trial
    (its finetune config) and in the driver (its cell) alike."""
    from pipelines.sweep.trial_setup import finetune_config  # torch: only this test

    old = {"encoder": "hybrid", "init": "scratch", "fraction": 0.05, "seed": 0, "lr": 1e-3}
    with pytest.raises(SpecError) as refused:
        cell_of(old)
    assert str(refused.value) == (
        "this sweep's saved trials name no architecture (they were saved by an older "
        "version): run the sweep again without resume"
    )
    with pytest.raises(SpecError, match="name no architecture"):
        finetune_config(SweepSpec(data="d", inits=["scratch"]), old | {"weight_decay": 0.0})
    new = {"architecture": "hybrid"} | {k: v for k, v in old.items() if k != "encoder"}
    assert cell_of(new) == Cell("hybrid", "scratch", None, 0.05, 0)


def test_the_search_seed_changes_the_draws() -> None:
    def draws(seed: int) -> list[dict]:
        search = SearchSpec(mode="random", num_samples=3, lr=[3e-4, 1e-2], seed=seed)
        return search_space(_spec("every-seed", search=search), [])["setting"]["grid_search"]

    assert draws(1) == draws(1) and draws(1) != draws(2)


def test_search_and_weights_mistakes_are_refused_in_one_sentence() -> None:
    with pytest.raises(ValueError, match="one value of each gives identical draws"):
        SearchSpec(mode="random", num_samples=4, lr=[3e-3], weight_decay=[0.05])
    assert SearchSpec(mode="random", num_samples=1, lr=[3e-3], weight_decay=[0.05])
    with pytest.raises(ValueError, match="same weights twice"):
        SweepSpec(data="d", pretrained=["a.pt", "b.pt", "a.pt"])
    with pytest.raises(ValueError, match="no 'selfie' init"):
        PipelineSpec(data="d", pretrain_seeds=2, sweep={"inits": ["scratch"]})
