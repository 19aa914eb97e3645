import json
import math
from pathlib import Path

import pytest

from pipelines.report.publish import write_report
from pipelines.report.results_table import (
    UNDER_TRAINED,
    CellResult,
    cells_from_json,
    summarize,
    t_quantile_975,
    to_csv,
    to_json,
    to_markdown,
)


def _cells() -> list[CellResult]:
    cells = []
    for seed, (scratch, selfie) in enumerate([(0.70, 0.75), (0.72, 0.79), (0.74, 0.77)]):
        cells.append(CellResult("resnet50", "scratch", 0.05, seed, "ok", test_accuracy=scratch))
        cells.append(CellResult("resnet50", "selfie", 0.05, seed, "ok", test_accuracy=selfie))
    cells.append(CellResult("resnet50", "scratch", 1.0, 0, "ok", test_accuracy=0.95))
    cells.append(CellResult("resnet50", "scratch", 1.0, 1, "failed"))
    cells.append(CellResult("resnet50", "selfie", 1.0, 0, "failed"))
    return cells


def test_mean_std_and_paired_delta_with_t_interval() -> None:
    rows = summarize(_cells(), seeds_asked=3)
    row = rows[0]
    assert row.fraction == 0.05
    assert abs(row.scratch.mean - 0.72) < 1e-9 and abs(row.scratch.std - 0.02) < 1e-9
    # Paired: differences 0.05, 0.07, 0.03 -> mean 0.05, std 0.02, t(0.975, 2) = 4.303.
    assert row.paired.per_seed == pytest.approx({0: 0.05, 1: 0.07, 2: 0.03})
    assert abs(row.delta - 0.05) < 1e-9 and abs(row.paired.std - 0.02) < 1e-9
    half = 4.3027 * 0.02 / math.sqrt(3)
    assert row.paired.interval == pytest.approx((0.05 - half, 0.05 + half))
    assert row.paired.significant  # 0.0003 > 0, barely
    md = to_markdown(rows)
    assert "| resnet50 | 5% | 72.0 ± 2.0 | 77.0 ± 2.0 | +5.0 ± 2.0 [+0.0, +10.0]* |" in md
    assert "`*`: the interval excludes 0" in md


def test_paired_std_differs_from_unpaired_spread() -> None:
    # Both arms vary a lot across seeds (subset difficulty) but the gain is steady: pairing
    # sees it; a difference of unpaired means with their stds would not.
    cells = []
    for seed, base in enumerate([0.60, 0.80, 0.70]):
        cells.append(CellResult("hybrid", "scratch", 0.1, seed, "ok", test_accuracy=base))
        cells.append(CellResult("hybrid", "selfie", 0.1, seed, "ok", test_accuracy=base + 0.02))
    row = summarize(cells, 3)[0]
    assert row.scratch.std == pytest.approx(0.1)
    assert row.paired.std == pytest.approx(0.0, abs=1e-12)
    assert row.paired.significant  # a steady +2 on every subset


def test_interval_that_includes_zero_is_not_starred() -> None:
    cells = []
    for seed, (a, b) in enumerate([(0.70, 0.75), (0.72, 0.69), (0.74, 0.76)]):
        cells.append(CellResult("resnet50", "scratch", 0.2, seed, "ok", test_accuracy=a))
        cells.append(CellResult("resnet50", "selfie", 0.2, seed, "ok", test_accuracy=b))
    row = summarize(cells, 3)[0]
    assert row.paired.interval[0] < 0 < row.paired.interval[1]
    assert not row.paired.significant
    assert "]*" not in to_markdown([row])


def test_unpaired_seeds_are_left_out_of_delta_and_n1_has_no_interval() -> None:
    cells = [
        CellResult("hybrid", "scratch", 0.05, 0, "ok", test_accuracy=0.5),
        CellResult("hybrid", "selfie", 0.05, 0, "ok", test_accuracy=0.6),
        CellResult("hybrid", "scratch", 0.05, 1, "failed"),
        CellResult("hybrid", "selfie", 0.05, 1, "ok", test_accuracy=0.9),
    ]
    row = summarize(cells, 2)[0]
    assert row.paired.per_seed == pytest.approx({0: 0.1})  # seed 1 has no scratch partner
    assert row.paired.interval is None
    assert "+10.0 ± 0.0 (n=1, no interval)" in to_markdown([row])


def test_t_quantile() -> None:
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile_975(40) == pytest.approx(2.0211, abs=1e-3)
    assert t_quantile_975(200) == pytest.approx(1.9719, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_several_pretraining_seeds_are_averaged_before_pairing() -> None:
    cells = []
    for seed, scratch in enumerate([0.70, 0.72]):
        cells.append(CellResult("hybrid", "scratch", 0.05, seed, "ok", test_accuracy=scratch))
        for p, gain in enumerate([0.02, 0.06]):
            cells.append(
                CellResult(
                    "hybrid", "selfie", 0.05, seed, "ok", test_accuracy=scratch + gain,
                    pretrain_seed=p,
                )
            )  # fmt: skip
    row = summarize(cells, 2)[0]
    assert row.paired.n == 2  # finetune seeds, not seeds x pretraining seeds
    assert row.paired.per_seed == pytest.approx({0: 0.04, 1: 0.04})
    assert row.selfie.n == 2
    assert row.pretrain_std == pytest.approx(math.sqrt(2) * 0.02)
    assert "pretrain seed 1" in to_markdown([row])


def test_missing_seeds_are_said_not_hidden() -> None:
    rows = summarize(_cells(), seeds_asked=3)
    full = rows[1]
    assert full.scratch.n == 1 and full.selfie.n == 0
    md = to_markdown(rows)
    assert "95.0 ± 0.0 (n=1/3)" in md
    assert "missing (n=0/3)" in md
    assert full.delta is None and "| n/a |" in md


def test_per_cell_details_flag_best_epoch_at_end_of_budget() -> None:
    done = dict(status="ok", test_accuracy=0.9, val_accuracy=0.91, weight_decay=0.05)
    cells = [
        CellResult("hybrid", "scratch", 1.0, 0, lr=3e-3, best_epoch=20, epochs_run=20,
                   epochs_budget=20, **done),
        CellResult("hybrid", "selfie", 1.0, 0, lr=1e-3, best_epoch=7, epochs_run=20,
                   epochs_budget=20, **done),
        # Patience stopped it early: validation had stopped improving, so not under-trained.
        CellResult("resnet50", "scratch", 1.0, 0, lr=1e-2, best_epoch=9, epochs_run=9,
                   epochs_budget=40, **done),
    ]  # fmt: skip
    assert [c.under_trained for c in cells] == [True, False, False]
    md = to_markdown(summarize(cells, 1))
    assert (
        f"| hybrid | 100% | scratch | 0 | 90.0 | 91.0 | 0.003 | 0.05 | 20/20 | {UNDER_TRAINED} |"
        in md
    )
    assert "| hybrid | 100% | selfie | 0 | 90.0 | 91.0 | 0.001 | 0.05 | 7/20 |  |" in md
    assert "9/9 (stopped, budget 40)" in md
    assert "1 cell(s) reached their best validation in the last epoch" in md


def test_csv_json_roundtrip_and_plot(tmp_path: Path) -> None:
    cells = _cells()
    rows = summarize(cells, 3)
    csv_text = to_csv(rows)
    assert csv_text.splitlines()[0].startswith("architecture,fraction,scratch_mean")
    assert "0:0.05;1:0.07;2:0.03" in csv_text  # per-seed paired differences
    assert cells_from_json(to_json(rows, cells)) == cells
    md = write_report(cells, 3, tmp_path)
    assert (tmp_path / "accuracy_gain.png").stat().st_size > 5000
    assert (tmp_path / "table.md").read_text() == md
    table = json.loads((tmp_path / "results.json").read_text())["table"]
    assert table[0]["seeds_asked"] == 3
    assert table[0]["scratch_per_seed"] == {"0": 0.7, "1": 0.72, "2": 0.74}
    assert table[0]["delta_significant"] is True and table[0]["delta_ci_low"] > 0


def test_old_results_json_without_new_fields_still_loads() -> None:
    old = {"cells": [{"encoder": "hybrid", "init": "scratch", "fraction": 0.05, "seed": 0,
                      "status": "ok", "test_accuracy": 0.5, "val_accuracy": None, "lr": None,
                      "weight_decay": None, "trial_id": None}]}  # fmt: skip
    (cell,) = cells_from_json(json.dumps(old))
    assert cell.architecture == "hybrid"  # the field was called `encoder` then
    assert cell.best_epoch is None and not cell.under_trained


def _plot_gain_axes(rows, path: Path, monkeypatch):
    """Plot `rows` and return the gain panel of the figure (kept from `plt.close`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.report import plot

    seen = {}
    real_close = plt.close

    def keep(fig=None):
        seen["fig"] = fig
        real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    plot.plot_results(rows, path)
    _, ax_gain = seen["fig"].axes
    return ax_gain


def test_plot_labels_fractions_not_powers_of_ten(tmp_path: Path, monkeypatch) -> None:
    cells = _cells() + [
        CellResult("resnet50", s, 0.02, 0, "ok", test_accuracy=0.6) for s in ("scratch", "selfie")
    ]
    ax_gain = _plot_gain_axes(summarize(cells, 3), tmp_path / "p.png", monkeypatch)
    labels = [t.get_text() for t in ax_gain.get_xticklabels()]
    assert labels == ["2%", "5%", "100%"]
    # The gain at 5% carries its interval as an error bar (a LineCollection of caps/bars).
    assert any(len(c.get_segments()) for c in ax_gain.collections)


def test_plot_of_one_init_says_there_is_no_gain(tmp_path: Path, monkeypatch) -> None:
    import warnings

    scratch_only = [c for c in _cells() if c.init == "scratch"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "No artists with labels" from an empty legend
        ax_gain = _plot_gain_axes(summarize(scratch_only, 3), tmp_path / "p.png", monkeypatch)
    assert [t.get_text() for t in ax_gain.texts] == ["no paired gain: no seed has both inits"]
    assert ax_gain.get_legend() is None


def test_an_init_never_asked_for_is_not_run_rather_than_missing() -> None:
    scratch_only = [c for c in _cells() if c.init == "scratch"]
    md = to_markdown(summarize(scratch_only, seeds_asked=3))
    assert "| resnet50 | 5% | 72.0 ± 2.0 | not run | n/a |" in md
    assert "| resnet50 | 100% | 95.0 ± 0.0 (n=1/3) | not run | n/a |" in md


def test_select_and_test_fills_the_cell_details(monkeypatch) -> None:
    """select_and_test keeps the best-validation trial per cell (one per pretraining seed for
    selfie) among trials that finished with a checkpoint, copies its lr, best epoch and
    budget into the cell, and lists the planned cells without a result as failed."""
    from types import SimpleNamespace

    import ray

    from pipelines.specs import SweepSpec
    from pipelines.sweep import driver
    from pipelines.sweep.trial_plan import CELL_KEY, SETTING_KEY

    class FakeRemote:
        def options(self, **_):
            return self

        def remote(self, sweep, config, model_config, checkpoint):
            return 0.5 + config["lr"]  # a "test accuracy" that tells the trials apart

    monkeypatch.setattr(ray, "remote", lambda fn: FakeRemote())
    monkeypatch.setattr(ray, "get", lambda ref: ref)

    def trial(init, lr, val, pseed=None, epoch=10, best=10, checkpoint=True):
        # Tune's config as the driver builds it: the cell, then the setting beside it.
        cell = dict(architecture="hybrid", init=init, pretrain_seed=pseed, fraction=1.0, seed=0)
        config = {CELL_KEY: cell, SETTING_KEY: {"lr": lr, "weight_decay": 0.0}}
        metrics = dict(best_val_accuracy=val, epoch=epoch, best_epoch=best, epochs_budget=10,
                       steps_per_epoch=63, trial_id=f"t{lr}{pseed}")  # fmt: skip
        return SimpleNamespace(
            config=config, metrics=metrics, error=None, checkpoint=object() if checkpoint else None
        )

    results = [
        trial("scratch", 0.01, 0.9),
        trial("scratch", 0.03, 0.8),
        trial("scratch", 0.05, 0.99, checkpoint=False),  # best, but nothing to test
        trial("selfie", 0.01, 0.95, pseed=0, best=4),
        trial("selfie", 0.02, 0.97, pseed=1, best=6),
    ]
    spec = SweepSpec(
        data="x", architectures=["hybrid"], inits=["scratch", "selfie"], fractions=[1.0],
        seeds=2, pretrained=["a/encoder.pt", "b/encoder.pt"],
    )  # fmt: skip
    cells = driver.select_and_test(results, spec, {})
    assert [(c.init, c.pretrain_seed, c.seed, c.status, c.lr) for c in cells] == [
        ("scratch", None, 0, "ok", 0.01),
        ("scratch", None, 1, "failed", None),
        ("selfie", 0, 0, "ok", 0.01),
        ("selfie", 0, 1, "failed", None),
        ("selfie", 1, 0, "ok", 0.02),
        ("selfie", 1, 1, "failed", None),
    ]
    cells = [c for c in cells if c.status == "ok"]
    scratch = cells[0]
    assert scratch.test_accuracy == pytest.approx(0.51) and scratch.under_trained
    assert (scratch.best_epoch, scratch.epochs_run, scratch.epochs_budget) == (10, 10, 10)
    assert not cells[1].under_trained and cells[2].best_epoch == 6
    row = summarize(cells, 2)[0]
    assert row.paired.per_seed == pytest.approx({0: (0.51 + 0.52) / 2 - 0.51})
