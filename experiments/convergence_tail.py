"""How much a sweep's trials still gained at the end of their budget.

For each trial that ran its whole budget: the best validation accuracy over all epochs minus
the best before the last quarter of its epochs. A network whose cells still gain points in
that last quarter has not converged under the budget (the "may be under-trained" flag of the
report says only whether the best epoch was the last). Reads the Tune experiment folders of
a sweep (`<storage>/<sweep run name>` and `...-replicates`); prints one JSON line per
(architecture, arm, fraction), gains in accuracy points.

    python experiments/convergence_tail.py work/results/ray_results/digits-study-1123-sweep*
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tail_gain(val_accuracy: list[float]) -> float:
    """Best over all epochs minus best before the last quarter (at least one epoch)."""
    quarter = max(1, len(val_accuracy) // 4)
    if len(val_accuracy) <= quarter:
        return 0.0
    return max(val_accuracy) - max(val_accuracy[:-quarter])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", type=Path, help="Tune experiment folders")
    args = parser.parse_args()
    gains: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for experiment in args.experiments:
        for trial_dir in sorted(experiment.glob("finetune_trial_*")):
            rows = [r for r in _results(trial_dir) if "epoch" in r and "val_accuracy" in r]
            budget = rows[-1].get("epochs_budget") if rows else None
            if budget is None or rows[-1]["epoch"] < budget:
                continue  # unfinished or stopped early: no end of budget to look at
            # A retried or resumed trial appends its epochs again: keep the last of each.
            by_epoch = {r["epoch"]: r["val_accuracy"] for r in rows}
            cell = rows[-1]["config"]["cell"]
            arm = cell["init"] if cell.get("pretrain_seed") is None else "selfie"
            # Trials of sweeps run before the rename name the architecture `encoder`.
            arch = cell.get("architecture", cell.get("encoder"))
            key = (arch, arm, float(cell["fraction"]))
            gains[key].append(tail_gain([by_epoch[e] for e in sorted(by_epoch)]))
    for (arch, arm, fraction), values in sorted(gains.items()):
        line = {
            "architecture": arch,
            "init": arm,
            "fraction": fraction,
            "trials": len(values),
            "mean_tail_gain_points": round(100 * statistics.mean(values), 1),
            "max_tail_gain_points": round(100 * max(values), 1),
        }
        print(json.dumps(line))


if __name__ == "__main__":
    main()
