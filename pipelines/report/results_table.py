"""Fraction x {scratch, selfie, delta} as mean +- std over seeds, per finetune encoder.

A cell with fewer seeds than asked says so (`n=2/3`) instead of silently averaging fewer.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass


@dataclass
class CellResult:
    """One (encoder, init, fraction, seed): the best-validation trial and its test accuracy."""

    encoder: str
    init: str
    fraction: float
    seed: int
    status: str  # "ok" | "failed"
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    weight_decay: float | None = None
    trial_id: str | None = None


@dataclass
class Stat:
    mean: float | None
    std: float | None
    n: int
    asked: int

    def text(self) -> str:
        if self.asked == 0:
            return "not run"
        if self.mean is None:
            return f"missing (n=0/{self.asked})"
        base = f"{100 * self.mean:.1f} ± {100 * (self.std or 0.0):.1f}"
        return base if self.n == self.asked else f"{base} (n={self.n}/{self.asked})"


@dataclass
class TableRow:
    encoder: str
    fraction: float
    scratch: Stat
    selfie: Stat

    @property
    def delta(self) -> float | None:
        if self.scratch.mean is None or self.selfie.mean is None:
            return None
        return self.selfie.mean - self.scratch.mean


def _stat(values: list[float], asked: int) -> Stat:
    if not values:
        return Stat(None, None, 0, asked)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Stat(statistics.fmean(values), std, len(values), asked)


def summarize(cells: list[CellResult], seeds_asked: int) -> list[TableRow]:
    """Every (encoder, fraction) row; an init the sweep never asked for reads "not run",
    one it asked for without a result "missing". Failed cells are listed, so they count."""
    inits_asked = {c.init for c in cells}
    rows = []
    for encoder in sorted({c.encoder for c in cells}):
        for fraction in sorted({c.fraction for c in cells if c.encoder == encoder}):

            def accs(init: str, enc: str = encoder, frac: float = fraction) -> list[float]:
                return [
                    c.test_accuracy
                    for c in cells
                    if c.encoder == enc and c.fraction == frac and c.init == init
                    if c.status == "ok" and c.test_accuracy is not None
                ]

            rows.append(
                TableRow(
                    encoder,
                    fraction,
                    _stat(accs("scratch"), seeds_asked if "scratch" in inits_asked else 0),
                    _stat(accs("selfie"), seeds_asked if "selfie" in inits_asked else 0),
                )
            )
    return rows


def _fraction_text(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def to_markdown(rows: list[TableRow], title: str = "Test accuracy (%)") -> str:
    lines = [f"**{title}**, mean ± std over seeds", ""]
    lines.append("| encoder | labeled | scratch | selfie | Δ |")
    lines.append("|---|---|---|---|---|")
    for r in rows:
        delta = "n/a" if r.delta is None else f"{100 * r.delta:+.1f}"
        lines.append(
            f"| {r.encoder} | {_fraction_text(r.fraction)} | {r.scratch.text()} | "
            f"{r.selfie.text()} | {delta} |"
        )
    return "\n".join(lines) + "\n"


def to_records(rows: list[TableRow]) -> list[dict]:
    return [
        {
            "encoder": r.encoder,
            "fraction": r.fraction,
            "scratch_mean": r.scratch.mean,
            "scratch_std": r.scratch.std,
            "scratch_n": r.scratch.n,
            "selfie_mean": r.selfie.mean,
            "selfie_std": r.selfie.std,
            "selfie_n": r.selfie.n,
            "seeds_asked": r.scratch.asked,
            "delta": r.delta,
        }
        for r in rows
    ]


def to_csv(rows: list[TableRow]) -> str:
    records = to_records(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else ["encoder"])
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def to_json(rows: list[TableRow], cells: list[CellResult]) -> str:
    return json.dumps({"table": to_records(rows), "cells": [asdict(c) for c in cells]}, indent=2)


def cells_from_json(text: str) -> list[CellResult]:
    return [CellResult(**c) for c in json.loads(text)["cells"]]
