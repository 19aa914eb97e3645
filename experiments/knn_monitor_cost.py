"""What one call of the in-loop representation monitor (kNN + linear probe) costs, in steps.

In one process: 11 timed pretraining steps of 64 images (tiny preset, the digits), then one
`monitor_scores` call on 512 train and 256 validation images cached as the loop would cache
them; twice, the second after warm-up. Prints the ratio and the share of a run at
`eval_every` = 500. Numbers in docs/RESULTS.md ("Did pretraining learn features?").

    SELFIE_WORKDIR=work/repr selfie ingest --source mnist-sample --out work/repr/digits
    python experiments/knn_monitor_cost.py work/repr/digits --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from pipelines.data.loader import ShardData
from pipelines.data.normalize import to_device_normalized
from pipelines.probe.monitor import monitor_batches, monitor_scores
from pipelines.training.steps import place, pretrain_step_lean
from selfie_core import SelfieConfig, SelfieModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    data = ShardData.open(args.data)
    model = place(SelfieModel(SelfieConfig(preset="tiny")), cpu)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    mean, std = data.manifest.mean, data.manifest.std
    loader = itertools.islice(iter(data.train_loader(64, num_workers=0)), 12)
    batches = [to_device_normalized(x, mean, std, cpu) for x, _ in loader]
    train = monitor_batches(data, "train", 512, 32, cpu)
    val = monitor_batches(data, "val", 256, 32, cpu)
    for _ in range(2):
        pretrain_step_lean(model, batches[0], generator, optimizer)
        start = time.perf_counter()
        for images in batches[1:]:
            pretrain_step_lean(model, images, generator, optimizer)
        step = (time.perf_counter() - start) / (len(batches) - 1)
        scores = monitor_scores(model, train, val)
        cost = scores["monitor_seconds"]
        print(
            json.dumps(
                {
                    "step_s": round(step, 3),
                    "monitor_s": round(cost, 2),
                    "steps_per_call": round(cost / step, 1),
                    "share_at_eval_every_500": round(cost / (500 * step), 4),
                    **scores,
                }
            )
        )


if __name__ == "__main__":
    main()
