"""`selfie bench gpu` end to end on the CPU (tiny preset, 32 px): the real pretraining loop
on generated photo-like JPEGs stays finite and learns, and every figure is reported."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from pipelines.bench.gpu_bench import learning_margin

ARGS = [
    "--device", "cpu", "--preset", "tiny", "--image-size", "32", "--batch-size", "16",
    "--steps", "120", "--step-only-steps", "10", "--images", "96", "--loader-workers", "1",
    "--resnet-steps", "2", "--json",
]  # fmt: skip


def test_the_margin_is_five_standard_errors_or_a_tenth_of_chance_above_chance() -> None:
    assert learning_margin(4, 1_000_000) == pytest.approx(0.275)  # chance 1/4 + 10%
    assert learning_margin(4, 40) == pytest.approx(0.25 + 5 * math.sqrt(0.25 * 0.75 / 40))


def test_bench_gpu_on_the_cpu_trains_learns_and_reports_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "bench", "gpu", *ARGS],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["failures"] == [] and result["errors"] == {}
    run = result["end_to_end.cpu_decode"]
    assert math.isfinite(run["last_loss"]) and run["images_per_s"] > 0
    chance = result["setup"]["chance_accuracy"]
    assert run["last_quarter_accuracy"] >= run["accuracy_needed"] >= 1.1 * chance
    assert run["last_quarter_accuracy"] > run["first_accuracy"]
    assert result["step_only_images_per_s.eager"] > 0
    assert result["fed_fraction"]["cpu_decode"] > 0
    assert result["matmul_peak"]["kind"] == "fp32 matmul 1024^3"  # labelled: no bf16 on a CPU
    assert 0 < result["model_flops_utilisation"]["step_only_eager"] < 1
    assert result["resnet50_images_per_s"] > 0 and result["loader_processes"] == 1
    assert {"torch", "torchvision"} <= set(result["versions"])


def test_a_training_path_that_raises_fails_the_check(tmp_path, monkeypatch) -> None:
    """On the H200 the device decode died in a device assert: an exception in a training
    section is a failure (non-zero exit), not just a missing figure."""
    from pipelines.bench import gpu_bench
    from pipelines.ingest.driver import ingest
    from pipelines.specs import IngestSpec

    ingest(IngestSpec(source="synthetic:64", out=tmp_path / "d"))

    def device_assert(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered\nmore")

    monkeypatch.setattr(gpu_bench, "data_stream", device_assert)
    result = gpu_bench.bench_gpu(
        device="cpu", preset="tiny", image_size=32, batch_size=8, steps=5, step_only_steps=5,
        data=str(tmp_path / "d"), loader_workers=0, resnet_steps=1,
    )  # fmt: skip
    assert result["failures"] == [
        "end_to_end_cpu_decode raised RuntimeError: CUDA error: device-side assert triggered"
    ]
    with pytest.raises(gpu_bench.BenchFailed, match="device-side assert"):
        gpu_bench.check(result)
