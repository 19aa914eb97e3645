"""Why the tiny hybrid (P + attention pooling + linear head) generalises poorly from scratch.

A plain loop, no Ray and no MLflow: the shipped MNIST digits ingested exactly as the pipeline
does (seeded stratified split: 4,000 train / 500 val / 500 test), decoded once into memory,
AdamW with a one-cycle schedule (linear warmup, cosine decay), batch 64. Prints train, val and
test accuracy of the last step and of the best-validation epoch. One thread, a few minutes.

    PYTHONPATH=. python experiments/hybrid_scratch.py --steps 930 --lr 3e-3 --aug none
    PYTHONPATH=. python experiments/hybrid_scratch.py --aug crop:4   # the pipeline's default

Knobs for the ablation: --aug (none | crop:N pad-and-crop by N px | shift:N, the same
but in whole steps of N px | affine, small rotation/scale/translation), --layers (depth of A),
--norm-first (pre-norm), --dropout (in A), --pos-scale (init std of the row/column
embeddings), --label-smoothing, --wd, --model-version (selfie_core's defaults as they are).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA_DIR = Path("/tmp/selfie-experiments/digits")


def load_digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from pipelines.data.images import decode_rgb
    from pipelines.data.loader import ShardData
    from pipelines.data.shard_io import image_bytes, iter_shard
    from pipelines.ingest.driver import ingest
    from pipelines.specs import IngestSpec

    if not (DATA_DIR / "manifest.json").exists():
        ingest(IngestSpec(source="mnist-sample", out=str(DATA_DIR)))
    data = ShardData.open(DATA_DIR)
    mean = torch.tensor(data.manifest.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.manifest.std).view(1, 3, 1, 1)
    out = {}
    for split in ("train", "val", "test"):
        samples = [
            (image_bytes(fields), int(fields["cls"]))
            for path in data.shards(split)
            for _key, fields in iter_shard(path)
        ]
        x = np.stack([decode_rgb(img) for img, _ in samples])
        images = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0)
        out[split] = ((images - mean) / std, torch.tensor([y for _, y in samples]))
    return out


def augment(images: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    if kind == "none":
        return images
    b, _, h, w = images.shape
    if kind.startswith(("crop:", "shift:")):
        name, n = kind.split(":")
        n = int(n)
        bg = images.amin(dim=(0, 2, 3), keepdim=True)  # the normalised value of a black pixel
        padded = F.pad(images - bg, (n, n, n, n)) + bg
        if name == "crop":
            offs = torch.randint(0, 2 * n + 1, (b, 2), generator=gen)
        else:  # whole-patch-fraction steps: -n, 0, +n
            offs = torch.randint(0, 3, (b, 2), generator=gen) * n
        out = torch.empty_like(images)
        for i in range(b):
            t, left = int(offs[i, 0]), int(offs[i, 1])
            out[i] = padded[i, :, t : t + h, left : left + w]
        return out
    if kind == "affine":
        angle = (torch.rand(b, generator=gen) - 0.5) * 2 * math.radians(10)
        scale = 1 + (torch.rand(b, generator=gen) - 0.5) * 0.2
        shift = (torch.rand(b, 2, generator=gen) - 0.5) * 2 * (2 / (h / 2))  # +-2 px
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        bg = images.amin(dim=(0, 2, 3), keepdim=True)
        return F.grid_sample(images - bg, grid, align_corners=False, padding_mode="zeros") + bg
    raise ValueError(f"unknown augmentation {kind!r}")


def build(args) -> torch.nn.Module:
    from selfie_core import presets
    from selfie_core.config import SelfieConfig
    from selfie_core.finetune_networks import build_finetune_network

    base = presets.get_preset(args.preset)
    changes = {}
    if args.layers is not None:
        changes["layers"] = args.layers
    if args.dropout is not None:
        changes["dropout"] = args.dropout
    if args.norm_first is not None:
        changes["norm_first"] = args.norm_first
    if args.pos_scale is not None:
        changes["pos_init_std"] = args.pos_scale
    preset = dataclasses.replace(base, name=base.name, **changes)
    presets.PRESETS[args.preset] = preset  # the config looks the preset up by name
    torch.manual_seed(args.seed)
    return build_finetune_network("hybrid", SelfieConfig(preset=args.preset, image_size=32), 10)


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    correct = sum(
        (model(x[i : i + 500]).argmax(-1) == y[i : i + 500]).sum().item()
        for i in range(0, len(y), 500)
    )
    model.train()
    return correct / len(y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=930)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.1, help="share of steps")
    p.add_argument("--aug", default="none")
    p.add_argument("--layers", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--norm-first", type=lambda s: s.lower() in ("1", "true", "yes"))
    p.add_argument("--pos-scale", type=float)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--eval-every", type=int, default=62)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="append the result as a JSON line here")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_digits()
    model = build(args)
    from pipelines.specs import OptimSpec
    from pipelines.training.optim import build_optimizer, build_scheduler

    optim = OptimSpec(
        lr=args.lr, weight_decay=args.wd, warmup_steps=int(args.warmup * args.steps),
        min_lr_ratio=0.0,
    )  # fmt: skip
    optimizer = build_optimizer(model, optim)
    scheduler = build_scheduler(optimizer, optim, args.steps)
    x_train, y_train = data["train"]
    gen = torch.Generator().manual_seed(args.seed)
    best = (-1.0, 0, None)
    tick = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(y_train), (args.batch,), generator=gen)
        images = augment(x_train[idx], args.aug, gen)
        loss = F.cross_entropy(model(images), y_train[idx], label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % args.eval_every == 0 or step == args.steps:
            val = accuracy(model, *data["val"])
            if val > best[0]:
                best = (val, step, {k: v.clone() for k, v in model.state_dict().items()})
    final = {
        "train": accuracy(model, *data["train"]),
        "val": accuracy(model, *data["val"]),
        "test": accuracy(model, *data["test"]),
    }
    model.load_state_dict(best[2])
    result = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "final": final,
        "best_val": best[0],
        "best_step": best[1],
        "test_at_best_val": accuracy(model, *data["test"]),
        "seconds": round(time.time() - tick),
    }
    print(json.dumps(result))
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
