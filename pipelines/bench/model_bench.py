"""`selfie bench model`: pretraining step speed, FLOPs and share of the matmul peak."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipelines.bench.timing import matmul_peak_flops, seconds_per_call
from pipelines.specs import OptimSpec
from pipelines.training.optim import build_optimizer
from pipelines.training.steps import place, pretrain_step
from selfie_core.config import SelfieConfig
from selfie_core.finetune_encoders import build_encoder
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
    peak = matmul_peak_flops(dev)

    m = max(1, round(config.grid.num_patches * config.mask_fraction))
    q = torch.randn(batch_size, m, config.model_preset.hidden, device=dev)
    k = torch.randn_like(q)
    batched = seconds_per_call(lambda: selection_loss(q, k), warmup=3, repeats=20)
    looped = seconds_per_call(lambda: selection_loss_reference(q, k), warmup=1, repeats=3)

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
        "share_of_matmul_peak": step_flops / secs / peak,
        "batched_loss_speedup_vs_loop": looped / batched,
        "params": {
            "selfie_total": _count(model),
            "patch_network": _count(model.patch_network),
            "attention_pool": _count(model.attention_pool),
            "resnet50_encoder": _count(build_encoder("resnet50", config, 10)),
            "hybrid_encoder": _count(build_encoder("hybrid", config, 10)),
        },
    }
