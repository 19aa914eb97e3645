"""Fraction x {scratch, selfie, paired Δ} per finetuned architecture, with per-seed values kept.

Accuracy cells are mean ± std over finetune seeds. Δ is **paired**: both inits of a seed
finetune on the same labeled subset, so the gain is computed per seed (selfie - scratch, same
architecture, fraction and seed) and the table reports the mean ± std of those differences with a
95% Student-t interval (n - 1 degrees of freedom; none for n = 1). A Δ whose interval
excludes 0 is marked `*`.

Several pretraining seeds: the selfie arm of a finetune seed is first averaged over the
pretraining seeds, then paired with that seed's scratch value. The finetune seed (the labeled
subset and the head's init) stays the unit of replication, as in a nested design; the spread
between pretraining seeds is reported separately (`pretrain_std`) rather than counted as
extra pairs, which would reuse one scratch value several times and overstate n.

A cell with fewer seeds than asked says so (`n=2/3`) instead of silently averaging fewer.
Each cell also records its chosen learning rate and best epoch; a cell whose best validation
came at the very end of its budget is flagged "may be under-trained".
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import asdict, dataclass, field, fields

# Two-sided 95% quantiles t_{0.975, dof} for dof 1..30; beyond, a Cornish-Fisher expansion
# around the normal quantile (error < 1e-4 there).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
UNDER_TRAINED = "may be under-trained"


def t_quantile_975(dof: int) -> float:
    """Student t quantile at 0.975 (the half-width factor of a two-sided 95% interval)."""
    if dof < 1:
        raise ValueError("a t interval needs at least 1 degree of freedom")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = 1.959964
    return (
        z
        + (z**3 + z) / (4 * dof)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)
    )


@dataclass
class CellResult:
    """One (architecture, init, fraction, seed[, pretraining seed]): the best-validation trial and
    its test accuracy.

    `best_epoch` is the epoch validation chose, `epochs_run` how many the trial ran and
    `epochs_budget` the most it could run (they differ when patience stopped it early);
    `steps_per_epoch` is the optimizer steps of one of its epochs. `pretrain_seed` tells
    the pretrained encoders of a selfie cell apart (None for scratch).
    """

    architecture: str
    init: str
    fraction: float
    seed: int
    status: str  # "ok" | "failed"
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    weight_decay: float | None = None
    trial_id: str | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    epochs_budget: int | None = None
    steps_per_epoch: int | None = None
    pretrain_seed: int | None = None

    @property
    def under_trained(self) -> bool:
        """Best validation at the very end of the budget: more training might still help.

        A trial that patience stopped early ended because validation had stopped improving,
        so only a trial that used its whole budget can be flagged.
        """
        if self.status != "ok" or self.best_epoch is None or self.epochs_run is None:
            return False
        used_budget = self.epochs_budget is None or self.epochs_run >= self.epochs_budget
        return used_budget and self.best_epoch >= self.epochs_run


@dataclass
class Stat:
    mean: float | None
    std: float | None
    n: int
    asked: int
    per_seed: dict[int, float] = field(default_factory=dict)

    def text(self) -> str:
        if self.asked == 0:
            return "not run"
        if self.mean is None:
            return f"missing (n=0/{self.asked})"
        base = f"{100 * self.mean:.1f} ± {100 * (self.std or 0.0):.1f}"
        return base if self.n == self.asked else f"{base} (n={self.n}/{self.asked})"


@dataclass
class Paired:
    """Per-seed differences selfie - scratch and their mean, std and 95% t interval."""

    per_seed: dict[int, float]

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.per_seed.values()) if self.per_seed else None

    @property
    def std(self) -> float | None:
        if not self.per_seed:
            return None
        return statistics.stdev(self.per_seed.values()) if self.n > 1 else 0.0

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% Student-t interval of the mean difference; None with fewer than 2 pairs."""
        if self.n < 2:
            return None
        assert self.mean is not None and self.std is not None
        half = t_quantile_975(self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    @property
    def significant(self) -> bool:
        ci = self.interval
        return ci is not None and (ci[0] > 0 or ci[1] < 0)

    def text(self) -> str:
        if self.mean is None:
            return "n/a"
        base = f"{100 * self.mean:+.1f} ± {100 * (self.std or 0.0):.1f}"
        ci = self.interval
        if ci is None:
            return f"{base} (n=1, no interval)"
        star = "*" if self.significant else ""
        return f"{base} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]{star}"


@dataclass
class TableRow:
    architecture: str
    fraction: float
    scratch: Stat
    selfie: Stat
    paired: Paired = field(default_factory=lambda: Paired({}))
    pretrain_std: float | None = None  # mean over seeds of the std across pretraining seeds
    cells: list[CellResult] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        """Mean of the paired per-seed differences (None without a single pair)."""
        return self.paired.mean


def _stat(per_seed: dict[int, float], asked: int) -> Stat:
    if not per_seed:
        return Stat(None, None, 0, asked)
    values = list(per_seed.values())
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stat(statistics.fmean(values), std, len(values), asked, dict(sorted(per_seed.items())))


def _ok(cell: CellResult) -> bool:
    return cell.status == "ok" and cell.test_accuracy is not None


def summarize(cells: list[CellResult], seeds_asked: int) -> list[TableRow]:
    """Every (architecture, fraction) row; an init the sweep never asked for reads "not run",
    one it asked for without a result "missing". Failed cells are listed, so they count."""
    inits_asked = {c.init for c in cells}
    rows = []
    for arch in sorted({c.architecture for c in cells}):
        for fraction in sorted({c.fraction for c in cells if c.architecture == arch}):
            mine = [c for c in cells if c.architecture == arch and c.fraction == fraction]
            scratch = {c.seed: c.test_accuracy for c in mine if c.init == "scratch" and _ok(c)}
            by_seed: dict[int, list[float]] = {}
            for c in mine:
                if c.init == "selfie" and _ok(c):
                    by_seed.setdefault(c.seed, []).append(c.test_accuracy)  # type: ignore[arg-type]
            selfie = {s: statistics.fmean(v) for s, v in by_seed.items()}
            spreads = [statistics.stdev(v) for v in by_seed.values() if len(v) > 1]
            diffs = {s: selfie[s] - scratch[s] for s in sorted(selfie) if s in scratch}
            rows.append(
                TableRow(
                    arch,
                    fraction,
                    _stat(scratch, seeds_asked if "scratch" in inits_asked else 0),  # type: ignore[arg-type]
                    _stat(selfie, seeds_asked if "selfie" in inits_asked else 0),
                    Paired(diffs),
                    statistics.fmean(spreads) if spreads else None,
                    sorted(mine, key=lambda c: (c.init, c.seed, c.pretrain_seed or 0)),
                )
            )
    return rows


def _fraction_text(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def _cell_line(r: TableRow, c: CellResult) -> str:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}"

    epoch = "—" if c.best_epoch is None else f"{c.best_epoch}/{c.epochs_run}"
    if c.epochs_budget is not None and c.epochs_run is not None and c.epochs_run < c.epochs_budget:
        epoch += f" (stopped, budget {c.epochs_budget})"
    init = c.init if c.pretrain_seed is None else f"{c.init} (pretrain seed {c.pretrain_seed})"
    note = "failed" if c.status != "ok" else (UNDER_TRAINED if c.under_trained else "")
    lr = "—" if c.lr is None else f"{c.lr:g}"
    wd = "—" if c.weight_decay is None else f"{c.weight_decay:g}"
    return (
        f"| {r.architecture} | {_fraction_text(r.fraction)} | {init} | {c.seed} | "
        f"{pct(c.test_accuracy)} | {pct(c.val_accuracy)} | {lr} | {wd} | {epoch} | {note} |"
    )


def to_markdown(
    rows: list[TableRow], title: str = "Test accuracy (%)", details: bool = True
) -> str:
    lines = [f"**{title}**, mean ± std over seeds", ""]
    lines.append("| architecture | labeled | scratch | selfie | Δ paired [95% CI] |")
    lines.append("|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r.architecture} | {_fraction_text(r.fraction)} | {r.scratch.text()} | "
            f"{r.selfie.text()} | {r.paired.text()} |"
        )
    lines += [
        "",
        "Δ: per seed, selfie - scratch on the same labeled subset (same architecture, "
        "fraction and seed); mean ± std of those differences and their 95% Student-t "
        "interval (n - 1 dof). `*`: the interval excludes 0.",
    ]
    if any(r.pretrain_std is not None for r in rows):
        lines.append(
            "With several pretraining seeds the selfie value of a seed is their mean; "
            "their spread is in the CSV/JSON (`selfie_pretrain_std`)."
        )
    flagged = [c for r in rows for c in r.cells if c.under_trained]
    if flagged:
        lines.append(
            f"{len(flagged)} cell(s) reached their best validation in the last epoch of the "
            f"budget ({UNDER_TRAINED}): see the details."
        )
    if details and any(r.cells for r in rows):
        lines += [
            "",
            "**Per cell**: the trial validation chose",
            "",
            "| architecture | labeled | init | seed | test | val | lr | wd | best epoch/run "
            "| note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [_cell_line(r, c) for r in rows for c in r.cells]
    return "\n".join(lines) + "\n"


def _seed_values(values: dict[int, float]) -> str:
    return ";".join(f"{s}:{v:.6g}" for s, v in sorted(values.items()))


def to_records(rows: list[TableRow]) -> list[dict]:
    records = []
    for r in rows:
        ci = r.paired.interval
        records.append(
            {
                "architecture": r.architecture,
                "fraction": r.fraction,
                "scratch_mean": r.scratch.mean,
                "scratch_std": r.scratch.std,
                "scratch_n": r.scratch.n,
                "selfie_mean": r.selfie.mean,
                "selfie_std": r.selfie.std,
                "selfie_n": r.selfie.n,
                "seeds_asked": r.scratch.asked or r.selfie.asked,
                "delta": r.delta,
                "delta_std": r.paired.std,
                "delta_n": r.paired.n,
                "delta_ci_low": ci[0] if ci else None,
                "delta_ci_high": ci[1] if ci else None,
                "delta_significant": r.paired.significant,
                "selfie_pretrain_std": r.pretrain_std,
                "under_trained_cells": sum(c.under_trained for c in r.cells),
                "scratch_per_seed": _seed_values(r.scratch.per_seed),
                "selfie_per_seed": _seed_values(r.selfie.per_seed),
                "delta_per_seed": _seed_values(r.paired.per_seed),
            }
        )
    return records


def to_csv(rows: list[TableRow]) -> str:
    records = to_records(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else ["architecture"])
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def to_json(rows: list[TableRow], cells: list[CellResult]) -> str:
    table = []
    for record, r in zip(to_records(rows), rows, strict=True):
        # JSON keeps the per-seed values as objects, not the CSV's "seed:value" strings.
        record |= {
            "scratch_per_seed": {str(s): v for s, v in r.scratch.per_seed.items()},
            "selfie_per_seed": {str(s): v for s, v in r.selfie.per_seed.items()},
            "delta_per_seed": {str(s): v for s, v in r.paired.per_seed.items()},
        }
        table.append(record)
    return json.dumps(
        {"table": table, "cells": [asdict(c) | {"under_trained": c.under_trained} for c in cells]},
        indent=2,
    )


def cells_from_json(text: str) -> list[CellResult]:
    """Cells back from results.json (older files lack the newer fields: they default)."""
    known = {f.name for f in fields(CellResult)}
    cells = []
    for c in json.loads(text)["cells"]:
        if "architecture" not in c and "encoder" in c:
            # results.json written before the finetuned network's kind was called its
            # architecture names it `encoder`.
            c = c | {"architecture": c["encoder"]}
        cells.append(CellResult(**{k: v for k, v in c.items() if k in known}))
    return cells
