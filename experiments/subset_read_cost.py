"""What streaming a labeled subset costs per pass: located once, then read by seeks (the
loader's way since 2026-11-30), against walking every tar header of the split each pass (its
way before). The finetune trials of a sweep read a 5% subset pass after pass; on the digits
the header walk was half of a trial's time. Prints JSON.

    selfie ingest --source mnist-sample --out work/digits
    python experiments/subset_read_cost.py work/digits --fraction 0.05 --passes 20
"""

from __future__ import annotations

import argparse
import json
import time

from pipelines.data.labels import labeled_positions
from pipelines.data.loader import ShardData, ShardStream
from pipelines.data.partition import ReaderSlot
from pipelines.data.shard_read import read_samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    data = ShardData.open(args.data)
    indices = labeled_positions(data.labels("train"), args.fraction, seed=0)
    stream = ShardStream(
        data.shards("train"), data.counts("train"), lambda image, rng: image,
        indices=indices, shuffle=False,
    )  # fmt: skip
    slot = ReaderSlot(0, 1)

    tick = time.perf_counter()
    located = sum(1 for p in range(args.passes) for _ in stream.pass_samples(slot, p))
    located_s = time.perf_counter() - tick

    tick = time.perf_counter()
    walked = 0
    for pass_no in range(args.passes):
        for piece in stream.pieces(slot, pass_no):
            positions = stream.selection.positions(piece)
            walked += sum(1 for _ in read_samples(stream.shards[piece.shard], positions))
    walked_s = time.perf_counter() - tick
    assert located == walked, (located, walked)
    print(
        json.dumps(
            {
                "subset": len(stream.selection),
                "split": int(sum(data.counts("train"))),
                "passes": args.passes,
                "located_ms_per_pass": round(1000 * located_s / args.passes, 2),
                "walked_ms_per_pass": round(1000 * walked_s / args.passes, 2),
                "speedup": round(walked_s / located_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
