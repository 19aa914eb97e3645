"""`selfie bench model` reports host syncs and the compile ratio, and survives a failed compile."""

from __future__ import annotations

import torch

from pipelines.bench.model_bench import bench_model


def test_bench_reports_syncs_and_a_failed_compile_without_crashing(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong trace")

    monkeypatch.setattr(torch, "compile", broken)
    result = bench_model("tiny", batch_size=4, image_size=32, steps=1)
    assert result["host_syncs_per_step_before"] == 2.0
    assert result["host_syncs_per_step_after"] == 0.2  # one read per 5 steps
    assert result["host_syncs_avoided_per_step"] == 1.8
    assert result["compiled_images_per_s"] is None and result["eager_images_per_s"] > 0
    assert result["compile_error"] == "RuntimeError: no C++ compiler found"
    assert result["matmul_peak_kind"] == "fp32 matmul 1024^3"  # a CPU step runs in fp32
    skipped = bench_model("tiny", batch_size=4, image_size=32, steps=1, compare_compile=False)
    assert skipped["compile_skipped"] is True
