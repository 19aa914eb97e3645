"""`selfie bench model`: pretraining step speed, FLOPs and share of the matmul peak (bf16
on a GPU, fp32 on a CPU, measured in the same run); host
syncs per step of the old and the lean loop; eager vs torch.compile images/s (one run)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipelines.bench.timing import seconds_per_call, step_peak
from pipelines.specs import OptimSpec
from pipelines.training.optim import build_optimizer
from pipelines.training.steps import (
    HostSyncCounter,
    MetricWindow,
    place,
    pretrain_step,
    pretrain_step_lean,
)
from selfie_core.config import SelfieConfig
from selfie_core.finetune_networks import build_finetune_network
from selfie_core.selection_loss import selection_loss, selection_loss_reference
from selfie_core.selfie_model import SelfieModel


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bench_model(
    preset: str = "tiny",
    batch_size: int = 64,
    image_size: int = 32,
    steps: int = 20,
    device: str | None = None,
    compare_compile: bool = True,
    log_every: int = 5,
) -> dict:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = SelfieConfig(preset=preset, image_size=image_size)
    model = place(SelfieModel(config), dev)
    optimizer = build_optimizer(model, OptimSpec())
    images = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        pretrain_step(model, images, generator, optimizer)

    step()
    with FlopCounterMode(display=False) as counter:
        step()
    step_flops = counter.get_total_flops()
    secs = seconds_per_call(step, warmup=3, repeats=steps)
    peak, peak_kind = step_peak(dev)

    m = max(1, round(config.grid.num_patches * config.mask_fraction))
    q = torch.randn(batch_size, m, config.model_preset.hidden, device=dev)
    k = torch.randn_like(q)
    batched = seconds_per_call(lambda: selection_loss(q, k), warmup=3, repeats=20)
    looped = seconds_per_call(lambda: selection_loss_reference(q, k), warmup=1, repeats=3)

    syncs = _host_syncs(model, images, generator, optimizer, dev, log_every)
    compiled = (
        _compile_ratio(config, dev, images, batch_size, steps)
        if compare_compile
        else {"compile_skipped": True}
    )

    return {
        "benchmark": "model",
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "preset": preset,
        "batch_size": batch_size,
        "image_size": image_size,
        "images_per_s": batch_size / secs,
        "step_seconds": secs,
        "step_flops": step_flops,
        "achieved_flops_per_s": step_flops / secs,
        "matmul_peak_flops_per_s": peak,
        "matmul_peak_kind": peak_kind,  # bf16 on a GPU (the step's autocast), fp32 on a CPU
        "share_of_matmul_peak": step_flops / secs / peak,
        "batched_loss_speedup_vs_loop": looped / batched,
        **syncs,
        **compiled,
        "params": {
            "selfie_total": _count(model),
            "patch_network": _count(model.patch_network),
            "attention_pool": _count(model.attention_pool),
            "resnet50_finetune": _count(build_finetune_network("resnet50", config, 10)),
            "hybrid_finetune": _count(build_finetune_network("hybrid", config, 10)),
        },
    }


def _host_syncs(model, images, generator, optimizer, dev, log_every: int) -> dict:
    """Host syncs per step: the old loop (`.item()` of loss and accuracy every step) against
    the lean one (metrics summed on the device, read once per `log_every` steps). Masks:
    drawn on the host and copied each step before, drawn on the device now."""
    with HostSyncCounter() as before:
        for _ in range(log_every):
            pretrain_step(model, images, generator, optimizer)
    window = MetricWindow(dev)
    lean_generator = torch.Generator(device=dev).manual_seed(0)
    with HostSyncCounter() as after:
        for _ in range(log_every):
            window.add(pretrain_step_lean(model, images, lean_generator, optimizer))
        window.read()
    per_before, per_after = before.count / log_every, after.count / log_every
    return {
        "host_syncs_per_step_before": per_before,
        "host_syncs_per_step_after": per_after,
        "host_syncs_avoided_per_step": per_before - per_after,
        "mask_host_to_device_copies_per_step_before": 2 if dev.type != "cpu" else 0,
        "mask_host_to_device_copies_per_step_after": 0,
    }


def _compile_ratio(config, dev, images, batch_size: int, steps: int) -> dict:
    """Eager vs torch.compile images/s of the same lean step, one run each. A compile that
    fails (no C++ compiler, unsupported op) is reported, not raised."""
    import time

    def timed(compile_model: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        model = place(SelfieModel(config), dev)
        runner = torch.compile(model) if compile_model else model
        optimizer = build_optimizer(model, OptimSpec())
        generator = torch.Generator(device=dev).manual_seed(0)
        tick = time.perf_counter()
        pretrain_step_lean(runner, images, generator, optimizer).loss.item()  # compiles here
        first = time.perf_counter() - tick
        secs = seconds_per_call(
            lambda: pretrain_step_lean(runner, images, generator, optimizer).loss.item(),
            warmup=2,
            repeats=steps,
        )
        return batch_size / secs, first

    eager, _ = timed(False)
    try:
        compiled, compile_seconds = timed(True)
    except Exception as exc:  # inductor raises many kinds; the bench reports, never crashes
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return {
            "eager_images_per_s": eager,
            "compiled_images_per_s": None,
            "compile_speedup": None,
            "compile_error": f"{type(exc).__name__}: {first_line}",
        }
    return {
        "eager_images_per_s": eager,
        "compiled_images_per_s": compiled,
        "compile_speedup": compiled / eager,
        "compile_first_step_seconds": compile_seconds,
        "compile_error": None,
    }
