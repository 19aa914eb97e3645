"""What a short Ray Train pretraining costs beyond its steps: the controller's and workers'
start, and the tail from the last report to `fit()` returning. The test suite runs a few
dozen such runs (2 workers, 6-48 steps), so this fixed cost is most of its Ray time.

Each run prints its wall time; with `SELFIE_PROGRESS_LINES=1` the workers' progress lines
show when the last step was reported, so the tail can be read against Ray's own log lines:

    SELFIE_PROGRESS_LINES=1 python experiments/train_run_overhead.py work/overhead --runs 2
    RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.5 RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0 \\
        python experiments/train_run_overhead.py work/overhead --runs 2

Starts a local Ray of its own: stop any other first (`ray stop`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()

    import ray

    from pipelines.ingest.driver import ingest
    from pipelines.pretrain.driver import run_pretrain
    from pipelines.specs import IngestSpec, OptimSpec, PretrainSpec
    from pipelines.specs.settings import Settings

    data = args.workdir / "data"
    if not (data / "manifest.json").exists():
        ingest(IngestSpec(source="synthetic:256", out=data, shard_max_count=64))
    tick = time.monotonic()
    ray.init(address="local", num_cpus=3, include_dashboard=True, dashboard_host="127.0.0.1")
    print(json.dumps({"ray_init_s": round(time.monotonic() - tick, 1)}), flush=True)
    for k in range(args.runs):
        spec = PretrainSpec(
            data=str(data), workers=2, cpus_per_worker=1, batch_size=16, loader_workers=0,
            max_steps=args.steps, checkpoint_every=args.steps, seed=3, register_model=None,
            optim=OptimSpec(lr=3e-3, warmup_steps=2), run_name=f"overhead-{time.time():.0f}-{k}",
        )  # fmt: skip
        tick = time.monotonic()
        result = run_pretrain(spec, Settings(workdir=args.workdir / "work"))
        seconds = round(time.monotonic() - tick, 1)
        print(json.dumps({"run": k, "steps": result.steps, "wall_s": seconds}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
