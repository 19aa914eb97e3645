"""The one finetune loop on two DDP ranks (real torch.distributed over gloo, two processes,
no Ray): rank 0 validates and decides, every rank stops with it when patience runs out, so
the ranks run the same epochs and DDP never hangs. The Ray-driven distributed trial runs
this loop (tests/test_distributed_trial.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from PIL import Image

from pipelines.ingest.driver import ingest
from pipelines.specs import IngestSpec
from tests.service_process import free_port

WORLD = 2


def _rank(rank: int, port: int, data_dir: str, out_dir: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from pipelines.data.loader import ShardData
    from pipelines.sweep.finetune import FinetuneConfig, Ranks, finetune
    from selfie_core import SelfieConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    cfg = FinetuneConfig(
        architecture="resnet50", init="scratch", lr=1e-2, weight_decay=0.05, epochs=5,
        batch_size=8, min_steps_per_epoch=2, warmup_epochs=0, seed=0, patience=1,
    )  # fmt: skip
    results = finetune(
        cfg, ShardData.open(data_dir), None, SelfieConfig(), None, torch.device("cpu"),
        ranks=Ranks(rank, WORLD), wrap=DistributedDataParallel,
    )  # fmt: skip
    seen = [[r.epoch, r.last, r.epochs_budget] for r in results]
    Path(out_dir, f"{rank}.json").write_text(json.dumps(seen))
    torch.distributed.destroy_process_group()


def test_every_rank_stops_with_rank_0_on_patience(tmp_path: Path) -> None:
    """One class: validation accuracy is 1.0 from the first epoch and never improves on it,
    so patience 1 ends the loop after epoch 2 of 5 on both ranks."""
    folder = tmp_path / "imgs" / "only"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = tmp_path / "data"
    ingest(IngestSpec(source=f"imagefolder:{folder.parent}", out=data, shard_max_count=10))
    context = mp.start_processes(
        _rank, args=(free_port(), str(data), str(tmp_path)), nprocs=WORLD, join=False,
        start_method="spawn",
    )  # fmt: skip
    try:
        for _ in range(600):  # a rank left alone would wait forever in DDP: bound the wait
            if context.join(timeout=0.5):
                break
        else:
            raise AssertionError("the ranks did not finish together (DDP hung)")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    for rank in range(WORLD):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == [[1, False, 5], [2, True, 5]]
