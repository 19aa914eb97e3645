"""Which trials a sweep runs: its cells, its arms and its search protocol.

An arm is an init with its weights: `scratch`, and `selfie` once per pretrained weights
(pretraining seed k = the k-th weights the spec names). A cell is (architecture, arm,
labeled fraction, finetune seed). Arms, not init x pretraining seed, so that scratch is not
trained once per pretraining seed.

Search protocol (`search.scope`):
- `every-seed`: every cell searches the hyper-parameters (the grid or the random draws);
- `first-seed`: only finetune seed 0 with pretraining seed 0 searches; every other cell of the
  same (architecture, init, fraction) then trains the setting that search chose by
  validation accuracy. Tune runs these as two experiments, the search then the replicates.

The trials' Tune config holds the cell as one dict under `cell` (a grid over cells, not a
product of axes), with `lr` and `weight_decay` beside it (grid), in a `setting` dict (random
draws, the same for every cell) or inside it (replicates); `trial_params` flattens it back
to one dict of plain values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pipelines.specs import SpecError, SweepSpec
from pipelines.specs.sweep_cells import (  # noqa: F401 - re-exported for the sweep
    Cell,
    all_cells,
    arms,
    replicate_cells,
    search_cells,
    trial_count,
)

CELL_KEY = "cell"
SETTING_KEY = "setting"  # random mode: the (lr, weight decay) draw, shared by every cell
SEARCH_PHASE = "search"
REPLICATE_PHASE = "replicates"


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's Tune config as one flat dict: architecture, init, pretrain_seed, fraction,
    seed, lr, weight_decay."""
    flat = dict(config.get(CELL_KEY) or {})
    flat.update(config.get(SETTING_KEY) or {})
    flat.update({k: v for k, v in config.items() if k not in (CELL_KEY, SETTING_KEY)})
    return flat


def _saved_by_an_older_version(what: str) -> SpecError:
    return SpecError(
        f"this sweep's saved trials {what} (they were saved by an older version): run the "
        "sweep again without resume"
    )


def weights_index(params: Mapping[str, Any]) -> int | None:
    """Which pretrained weights a trial finetunes: None for scratch; for selfie the index in
    the spec's `pretrained`. A trial config without one comes from a sweep saved by an older
    version: it is refused in one sentence."""
    if params["init"] != "selfie":
        return None
    if params.get("pretrain_seed") is None:
        raise _saved_by_an_older_version("name no pretrained weights")
    return int(params["pretrain_seed"])


def architecture_of(params: Mapping[str, Any]) -> str:
    """Which network a trial finetunes (resnet50 | hybrid). A trial config without one comes
    from a sweep saved by an older version (which called it `encoder`): it is refused in one
    sentence, as `weights_index` refuses one without weights."""
    if params.get("architecture") is None:
        raise _saved_by_an_older_version("name no architecture")
    return str(params["architecture"])


def cell_of(params: Mapping[str, Any]) -> Cell:
    return Cell(
        architecture_of(params),
        params["init"],
        weights_index(params),
        float(params["fraction"]),
        int(params["seed"]),
    )


def stops_early(spec: SweepSpec, phase: str) -> bool:
    """Whether the phase's trials may be stopped by ASHA: the search's only, with `asha`;
    the replicates train the setting their search chose to the end of its budget."""
    return spec.search.asha and phase == SEARCH_PHASE


def search_space(spec: SweepSpec, cells: list[Cell]) -> dict:
    """Tune's param space for the search phase: a grid, random draws included."""
    from ray import tune

    space: dict[str, Any] = {CELL_KEY: tune.grid_search([c.config() for c in cells])}
    if spec.search.mode == "grid":
        space["lr"] = tune.grid_search(list(spec.search.lr))
        space["weight_decay"] = tune.grid_search(list(spec.search.weight_decay))
    else:
        space[SETTING_KEY] = tune.grid_search(random_settings(spec))
    return space


def random_settings(spec: SweepSpec) -> list[dict[str, float]]:
    """`num_samples` (lr, weight decay) draws, log-uniform and uniform over the searched
    ranges, seeded by `search.seed`, and the same for every cell: both inits of a cell try
    the same settings. (Drawn per trial, the selfie hybrid at 100% once drew four learning
    rates above 5e-3 while scratch drew one near 3e-3: a difference of luck, not of init.)"""
    rng = np.random.default_rng(spec.search.seed)
    lo, hi = math.log(min(spec.search.lr)), math.log(max(spec.search.lr))
    wlo, whi = min(spec.search.weight_decay), max(spec.search.weight_decay)
    return [
        {"lr": float(math.exp(rng.uniform(lo, hi))), "weight_decay": float(rng.uniform(wlo, whi))}
        for _ in range(spec.search.num_samples)
    ]


def chosen_settings(
    searched: Iterable[tuple[Mapping[str, Any], float]],
) -> dict[tuple[str, str, float], dict[str, float]]:
    """Per (architecture, init, fraction), the lr and weight decay of the searched trial with
    the best validation accuracy; `searched` holds (trial config, best val accuracy)."""
    best: dict[tuple[str, str, float], tuple[float, dict[str, float]]] = {}
    for config, val in searched:
        params = trial_params(config)
        key = cell_of(params).setting_key
        if key not in best or val > best[key][0]:
            setting = {"lr": float(params["lr"]), "weight_decay": float(params["weight_decay"])}
            best[key] = (val, setting)
    return {key: setting for key, (_, setting) in best.items()}


def replicate_space(cells: list[Cell], chosen: Mapping[tuple, dict[str, float]]) -> dict | None:
    """The replicates' param space: each cell with its chosen setting. Cells whose search
    failed entirely have no setting and are left out (the report lists them as failed)."""
    from ray import tune

    configs = [c.config() | chosen[c.setting_key] for c in cells if c.setting_key in chosen]
    return {CELL_KEY: tune.grid_search(configs)} if configs else None
