"""`selfie bench gpu`: does pretraining train, and is the GPU fed? One run, one JSON.

For each data path (JPEG decoded in the loader processes; on CUDA also decoded on the
device) it runs the real pretraining loop (`pipelines.pretrain.plan/trainee/loop`, what
every Ray worker runs) for `steps` steps, and fails if a loss or a weight is not finite or
selection accuracy over the last quarter of the steps has not risen clearly above chance
(`learning_margin`). It reports the
step alone (the same loop over one batch held in memory), eager and compiled, end to end
per path, the fed fraction (end to end / step alone), the share of a matmul peak measured
in the same run (bf16 on a GPU, fp32 on a CPU), torchvision's ResNet-50 at the same batch
as a reference, and the versions of everything that changes these figures.

Needs no Ray, MLflow or FastAPI, so a node can be checked before a job (docs/PERFORMANCE.md,
GPU). The CPU smoke run, in seconds:

    python -m pipelines.bench.gpu_bench --device cpu --preset tiny --image-size 32 \\
        --batch-size 16 --steps 120 --step-only-steps 10 --images 96 --loader-workers 1 \\
        --resnet-steps 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipelines.bench.ingest_bench import make_jpeg_folder
from pipelines.bench.timing import seconds_per_call, step_peak
from pipelines.data.loader import ShardData
from pipelines.ingest.driver import ingest
from pipelines.pretrain.loop import Interval, run_steps
from pipelines.pretrain.plan import PretrainPlan, plan_pretrain
from pipelines.pretrain.trainee import Trainee, build_trainee, compile_trainee, data_stream
from pipelines.specs import IngestSpec, PretrainSpec, build_spec
from pipelines.specs.errors import SelfieError
from pipelines.training.compile import resolve_compile
from pipelines.training.optim import build_optimizer
from pipelines.training.steps import classify_step, place, pretrain_step
from selfie_core.masking import num_masked

WARMUP_INTERVALS = 2
"""Readings (of LOG_EVERY steps) left out of rates: allocator warm-up, compile, first fill."""


TRAINING_SECTIONS = frozenset(
    {"step_only_eager", "end_to_end_cpu_decode", "end_to_end_device_decode"}
)
"""Sections whose exception fails the check (the GPU run's device decode died in a device
assert); the others (compile, the reference, the peak) only record theirs."""


class BenchFailed(SelfieError):
    """Training on this node did not stay finite or did not learn; the message says which."""


def learning_margin(k: int, predictions: int) -> float:
    """Selection accuracy a learning run must reach over its last quarter of steps: chance
    (1/k over the k masked patches of an image) plus the larger of 5 standard errors of a
    chance-level mean over those `predictions` scored positions (noise alone passes with
    p < 3e-7) and 10% of chance (a real rise, not only a significant one). A run whose
    weights broke, or that does not learn, sits at chance or below."""
    chance = 1 / k
    se = math.sqrt(chance * (1 - chance) / max(1, predictions))
    return chance + max(5 * se, 0.1 * chance)


class BenchHooks:
    """Collects the loop's readings; rates leave out the first WARMUP_INTERVALS."""

    def __init__(self) -> None:
        self.readings: list[Interval] = []
        self.statuses: list[str] = []

    def status(self, step: int, text: str) -> None:
        self.statuses.append(text)

    def interval(self, reading: Interval, last: bool) -> None:
        self.readings.append(reading)

    def after_step(self, step: int, last: bool) -> None:
        return None

    def images_per_s(self) -> float:
        timed = self.readings[WARMUP_INTERVALS:] or self.readings[-1:]
        return sum(r.images for r in timed) / sum(r.seconds for r in timed)


def _params_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _train(
    plan: PretrainPlan,
    data: ShardData,
    device: torch.device,
    batches_for: Callable[[Trainee], Iterator[tuple[torch.Tensor, torch.Tensor]]],
) -> tuple[BenchHooks, bool]:
    """The pretraining loop from fresh weights, compiled as the plan says, over the batches
    `batches_for(trainee)` gives; (readings, weights finite)."""
    trainee = build_trainee(plan, 0, device)
    compile_trainee(trainee, plan)
    hooks = BenchHooks()
    batches = batches_for(trainee)
    run_steps(trainee, plan, batches, data.manifest.mean, data.manifest.std, hooks)
    return hooks, _params_finite(trainee.model)


def _versions(device: torch.device) -> dict:
    import torchvision

    out = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        out["cuda"] = torch.version.cuda
        out["gpu"] = torch.cuda.get_device_name(device)
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            out["driver"] = subprocess.run(
                query, capture_output=True, text=True, timeout=20, check=True
            ).stdout.split("\n")[0]
        except (OSError, subprocess.SubprocessError):
            out["driver"] = None
    return out


def _make_data(root: Path, images: int, seed: int) -> Path:
    """Photo-like JPEGs of varied sizes (300-500 px, `selfie bench ingest`'s generator),
    ingested as shards with their manifest, as a user's ImageNet would be."""
    workers = max(1, min(16, os.cpu_count() or 1))
    make_jpeg_folder(root / "jpegs", images, 10, min(images, 256), seed, workers)
    out = root / "data"
    ingest(IngestSpec(source=f"imagefolder:{root / 'jpegs'}", out=out, workers=workers))
    return out


def _resnet50_images_per_s(device: torch.device, batch: int, size: int, steps: int) -> float:
    """torchvision's ResNet-50 (1,000 classes) training steps through `classify_step`, the
    finetune step: a reference the reader knows (MLPerf: ~7.2k img/s per H100)."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = place(resnet50(num_classes=1000), device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 1000, (batch,), device=device)
    secs = seconds_per_call(lambda: classify_step(model, x, y, optimizer), warmup=2, repeats=steps)
    return batch / secs


def bench_gpu(
    *,
    device: str | None = None,
    preset: str = "paper",
    image_size: int = 224,
    batch_size: int = 256,
    steps: int = 300,
    step_only_steps: int = 60,
    data: str | None = None,
    images: int = 3000,
    loader_workers: int | None = None,
    compile_: bool | None = None,
    resnet_steps: int = 10,
    seed: int = 0,
    deadline_s: float = 540.0,
    on_figure: Callable[[str, object], None] = lambda name, value: None,
) -> dict:
    """Run every section (in order of value, each guarded, none started past `deadline_s`);
    return the figures and `failures` (sentences; empty when training stayed finite and
    learned). `compile_` None: compiled on CUDA, not on a CPU (`compile: auto`)."""
    started = time.monotonic()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    workers = (os.cpu_count() or 3) - 2 if loader_workers is None else loader_workers
    workers = max(0, workers)
    result: dict = {"benchmark": "gpu", "device": str(dev), "failures": [], "errors": {}}

    def put(name: str, value: object) -> None:
        result[name] = value
        on_figure(name, value)

    put("versions", _versions(dev))
    put("loader_processes", workers)
    with tempfile.TemporaryDirectory(prefix="selfie-bench-gpu-") as tmp:
        tick = time.monotonic()
        data_dir = Path(data) if data else _make_data(Path(tmp), images, seed)
        shards = ShardData.open(data_dir)
        if not data:
            put("generated_images_s", round(time.monotonic() - tick, 1))

        def plan_for(decode: str, compiled: bool | str, n_steps: int = steps) -> PretrainPlan:
            spec = build_spec(
                PretrainSpec,
                {
                    "data": str(data_dir), "preset": preset, "image_size": image_size,
                    "batch_size": batch_size, "epochs": 10_000, "max_steps": n_steps,
                    "loader_workers": workers, "jpeg_decode": decode, "compile": compiled,
                    "seed": seed, "checkpoint_every": None, "register_model": None,
                    # The default recipe, with warmup shortened for short smoke runs.
                    "optim": {"warmup_steps": min(50, max(1, n_steps // 5))},
                },
            )  # fmt: skip
            return plan_pretrain(spec, shards)

        plan = plan_for("cpu", "auto" if compile_ is None else compile_)
        compiled = resolve_compile(plan.spec.compile, dev)
        k = num_masked(plan.model.grid.num_patches, plan.model.mask_fraction)
        put("setup", {
            "preset": preset, "image_size": image_size, "batch_size": batch_size,
            "steps": steps, "masked_per_image": k, "chance_accuracy": 1 / k,
            "train_images": shards.manifest.counts["train"], "compiled_end_to_end": compiled,
        })  # fmt: skip

        def section(name: str, run: Callable[[], None]) -> None:
            if time.monotonic() - started > deadline_s:
                result["errors"][name] = f"skipped: past the {deadline_s:.0f} s deadline"
                return
            try:
                run()
            except BenchFailed:
                raise
            except Exception as exc:  # one section's failure must not lose the others
                text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                result["errors"][name] = f"{type(exc).__name__}: {text}"
                on_figure(f"error.{name}", result["errors"][name])
                if name in TRAINING_SECTIONS:  # a device assert is training breaking too
                    result["failures"].append(f"{name} raised {result['errors'][name]}")

        first_batch = next(iter(shards.train_loader(batch_size, image_size=image_size,
                                                    num_workers=0, seed=seed)))  # fmt: skip
        step_only: dict[str, float] = {}

        def step_alone(compile_now: bool) -> None:
            short = plan_for("cpu", compile_now, step_only_steps)
            hooks, finite = _train(short, shards, dev, lambda t: itertools.repeat(first_batch))
            label = "compiled" if compile_now else "eager"
            step_only[label] = hooks.images_per_s()
            put(f"step_only_images_per_s.{label}", round(step_only[label], 1))
            if not finite or not all(math.isfinite(r.loss) for r in hooks.readings):
                result["failures"].append(
                    f"the {label} step alone gave a non-finite loss or weight"
                )

        def end_to_end(path: str) -> None:
            decode = "cpu" if path == "cpu_decode" else "device"
            run_plan = plan_for(decode, plan.spec.compile)
            hooks, finite = _train(
                run_plan, shards, dev, lambda t: data_stream(t, run_plan, shards, world=1)
            )
            rate = hooks.images_per_s()
            tail = [r for r in hooks.readings if r.step > 0.75 * steps] or hooks.readings[-1:]
            seen = sum(r.images for r in tail)
            accuracy = sum(r.accuracy * r.images for r in tail) / seen
            margin = learning_margin(k, seen * k)
            put(f"end_to_end.{path}", {
                "images_per_s": round(rate, 1),
                "first_loss": hooks.readings[0].loss, "last_loss": hooks.readings[-1].loss,
                "first_accuracy": hooks.readings[0].accuracy,
                "last_quarter_accuracy": accuracy, "accuracy_needed": round(margin, 4),
                "statuses": hooks.statuses,
            })  # fmt: skip
            losses = [r.loss for r in hooks.readings]
            if not finite or not all(math.isfinite(v) for v in losses):
                bad = next((r.step for r in hooks.readings if not math.isfinite(r.loss)), steps)
                result["failures"].append(
                    f"{path}: a loss or weight went non-finite (by step {bad}): do not train on "
                    "this node with this path"
                )
            elif accuracy < margin:
                result["failures"].append(
                    f"{path}: selection accuracy {accuracy:.3f} over the last quarter of {steps} "
                    f"steps is below {margin:.3f} (chance {1 / k:.3f}): training does not learn"
                )

        section("step_only_eager", lambda: step_alone(False))
        section("end_to_end_cpu_decode", lambda: end_to_end("cpu_decode"))
        if compiled or compile_:
            section("step_only_compiled", lambda: step_alone(True))
        if dev.type == "cuda":
            section("end_to_end_device_decode", lambda: end_to_end("device_decode"))

        def fed() -> None:
            base = step_only.get("compiled" if compiled else "eager")
            put("fed_fraction", {
                path: round(result[f"end_to_end.{path}"]["images_per_s"] / base, 3)
                for path in ("cpu_decode", "device_decode") if f"end_to_end.{path}" in result
            })  # fmt: skip

        section("fed_fraction", fed)

        def utilisation() -> None:
            torch.manual_seed(seed)
            probe = build_trainee(plan, 0, dev)
            x = first_batch[0].to(dev).float().contiguous(memory_format=torch.channels_last)
            opt = build_optimizer(probe.model, plan.spec.optim)
            with FlopCounterMode(display=False) as counter:
                pretrain_step(probe.model, x, probe.generator, opt)
            flops = counter.get_total_flops() / batch_size  # per image
            peak, kind = step_peak(dev)
            put("step_flops_per_image", flops)
            put("matmul_peak", {"flops_per_s": peak, "kind": kind})
            put("model_flops_utilisation", {
                name: round(rate * flops / peak, 4) for name, rate in {
                    **{f"step_only_{mode}": v for mode, v in step_only.items()},
                    **{f"end_to_end_{p}": result[f"end_to_end.{p}"]["images_per_s"]
                       for p in ("cpu_decode", "device_decode") if f"end_to_end.{p}" in result},
                }.items()
            })  # fmt: skip

        section("utilisation", utilisation)
        section("resnet50", lambda: put(
            "resnet50_images_per_s",
            round(_resnet50_images_per_s(dev, batch_size, image_size, resnet_steps), 1),
        ))  # fmt: skip
    put("seconds", round(time.monotonic() - started, 1))
    return result


def check(result: dict) -> None:
    """Raise `BenchFailed` with the first failure as one sentence (and how many more)."""
    failures = result["failures"]
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise BenchFailed(f"{failures[0]}{more}")


def main(argv: list[str] | None = None) -> int:
    """The Ray-free entry: figures as JSON lines on stderr as they come, the whole JSON on
    stdout, exit 1 with one sentence when training broke or did not learn."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench.gpu_bench")
    parser.add_argument("--device")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--step-only-steps", type=int, default=60)
    parser.add_argument("--data")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--loader-workers", type=int)
    parser.add_argument("--compile", choices=["auto", "true", "false"], default="auto")
    parser.add_argument("--resnet-steps", type=int, default=10)
    parser.add_argument("--deadline-s", type=float, default=540.0)
    args = parser.parse_args(argv)

    def line(name: str, value: object) -> None:
        print(json.dumps({name: value}, default=str), file=sys.stderr, flush=True)

    compile_ = {"auto": None, "true": True, "false": False}[args.compile]
    try:
        result = bench_gpu(
            device=args.device, preset=args.preset, image_size=args.image_size,
            batch_size=args.batch_size, steps=args.steps, step_only_steps=args.step_only_steps,
            data=args.data, images=args.images, loader_workers=args.loader_workers,
            compile_=compile_, deadline_s=args.deadline_s, resnet_steps=args.resnet_steps,
            on_figure=line,
        )  # fmt: skip
        print(json.dumps(result, indent=2, default=str), flush=True)
        check(result)
    except SelfieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
