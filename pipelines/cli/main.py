"""The pipelines' verbs of the `selfie` command: one per job kind (ingest, pretrain, sweep,
pipeline), generated from its spec model, plus `report` and the benchmarks. The control
service's command (`services.cli`) mounts these beside its own verbs; `python -m
pipelines.cli.main` runs them alone, without the service.

Errors a user can fix (`SelfieError`) print one sentence and exit with status 2 (130 for a
job stopped by Ctrl+C or SIGTERM, see `runner`); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console

from pipelines.cli.runner import exit_status
from pipelines.cli.spec_options import CONFIG_OPTION, check_known_kind, spec_data, spec_options
from pipelines.specs import JOB_KINDS, JobKind, Spec, SpecError, build_spec
from pipelines.specs.errors import SelfieError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Selfie pipelines: ingest, pretrain, sweep, pipeline, report, and benchmarks.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print JSON figures.")
app.add_typer(bench_app, name="bench")

console = Console(stderr=True)


@contextmanager
def progress_bar() -> Iterator[None]:
    """The progress of the stages this process runs (`runtime.progress`), as a live bar per
    stage on a terminal; silent when output is piped (CI logs stay readable)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from pipelines.runtime.progress import shown_by

    with Progress(
        "[bold]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def show(record: dict[str, Any]) -> None:
            stage = record["stage"]
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=record.get("total"))
            bar.update(tasks[stage], completed=record["done"], total=record.get("total"))

        with shown_by(show):
            yield


def emit(result: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


@bench_app.command("model")
def bench_model_cmd(
    preset: str = typer.Option("tiny", help="Model preset."),
    batch_size: int = typer.Option(64, help="Images per step."),
    image_size: int = typer.Option(32, help="Square image side."),
    steps: int = typer.Option(20, help="Timed steps."),
    device: str | None = typer.Option(None, help="cpu or cuda; default: cuda when present."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pretraining step speed, FLOPs, share of matmul peak, batched-loss speedup, params."""
    from pipelines.bench.model_bench import bench_model

    emit(bench_model(preset, batch_size, image_size, steps, device), as_json)


@bench_app.command("gpu")
def bench_gpu_cmd(
    device: str | None = typer.Option(None, help="cuda or cpu; default: cuda when present."),
    preset: str = typer.Option("paper", help="Model preset."),
    image_size: int = typer.Option(224, help="The model's image side."),
    batch_size: int = typer.Option(256, help="Images per step."),
    steps: int = typer.Option(300, help="Training steps per data path (checked for learning)."),
    step_only_steps: int = typer.Option(60, help="Steps of the step-alone timings."),
    data: str | None = typer.Option(None, help="Ingested data dir (default: generate JPEGs)."),
    images: int = typer.Option(3000, help="Photo-like 300-500 px JPEGs to generate."),
    loader_workers: int | None = typer.Option(None, help="Loader processes (default: CPUs - 2)."),
    compile_model: str = typer.Option(
        "auto", "--compile", help="auto (on CUDA), true or false: torch.compile the step."
    ),
    resnet_steps: int = typer.Option(10, help="Timed ResNet-50 reference steps."),
    deadline_s: float = typer.Option(540.0, help="Start no section after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Does pretraining train and is the GPU fed: the real loop per data path, step alone,
    fed fraction, bf16 MFU, ResNet-50 reference. Exits 2 if training broke or did not learn."""
    from pipelines.bench.gpu_bench import bench_gpu, check

    choices = {"auto": None, "true": True, "false": False}
    if compile_model not in choices:
        raise SpecError(f"--compile takes auto, true or false, got {compile_model!r}")
    result = bench_gpu(
        device=device, preset=preset, image_size=image_size, batch_size=batch_size,
        steps=steps, step_only_steps=step_only_steps, data=data, images=images,
        loader_workers=loader_workers, compile_=choices[compile_model], deadline_s=deadline_s,
        resnet_steps=resnet_steps,
    )  # fmt: skip
    emit(result, as_json)
    check(result)


@bench_app.command("data")
def bench_data_cmd(
    data: str | None = typer.Option(None, help="Also time this ingested data dir."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    batches: int = typer.Option(8, help="Timed batches per setting."),
    image_size: int = typer.Option(224, help="The model's image side."),
    random_resized_crop: bool = typer.Option(
        True, help="Time the training path (RandomResizedCrop); --no-... times evaluation."
    ),
    num_images: int = typer.Option(300, help="Generated 300-500 px images per format."),
    device: str | None = typer.Option(
        None, help="Also time JPEG decoded and cropped on this device (cuda: nvJPEG)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Loader images/s per process at the model's size: JPEG kept vs PNG re-encoded."""
    from pipelines.bench.data_bench import bench_data

    result = bench_data(
        data,
        batch_size,
        batches,
        image_size=image_size,
        random_resized_crop=random_resized_crop,
        num_images=num_images,
        device=device,
    )
    emit(result, as_json)


@bench_app.command("ingest")
def bench_ingest_cmd(
    images: int = typer.Option(20000, help="Generated JPEGs (300-500 px, varied sizes)."),
    repeats: int = typer.Option(1, help="Interleaved rounds per worker count (best kept)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Ingest images/s with 1 and 2 worker processes, JPEG bytes in = payload bytes out."""
    from pipelines.bench.ingest_bench import bench_ingest

    emit(bench_ingest(images=images, repeats=repeats), as_json)


@bench_app.command("trial-memory")
def bench_trial_memory_cmd(
    images: int = typer.Option(20000, help="Generated JPEGs (300-500 px) to ingest."),
    fractions: str = typer.Option("0.05,1.0", help="Labeled fractions, comma-separated."),
    image_size: int = typer.Option(64, help="The model's image side while streaming."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Peak memory of a sweep trial's data path at each labeled fraction, and their ratio."""
    from pipelines.bench.trial_memory_bench import bench_trial_memory

    try:
        values = tuple(float(f) for f in fractions.split(",") if f.strip())
    except ValueError:
        raise SpecError(f"--fractions takes numbers like 0.05,1.0, got {fractions!r}") from None
    emit(bench_trial_memory(images, values, image_size=image_size), as_json)


@bench_app.command("train")
def bench_train_cmd(
    data: str | None = typer.Option(None, help="Ingested data dir (default: ingest digits)."),
    batch_size: int = typer.Option(64, help="Images per worker per step."),
    steps: int = typer.Option(60, help="Steps per measured run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """images/s of Ray Train (1 and 2 workers) against the plain PyTorch loop."""
    import tempfile

    from pipelines.bench.train_bench import bench_train
    from pipelines.ingest.driver import ingest as run_ingest
    from pipelines.runtime.ray_cluster import ensure_ray
    from pipelines.specs import IngestSpec
    from pipelines.specs.settings import get_settings

    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            data = str(Path(tmp) / "digits")
            run_ingest(IngestSpec(source="mnist-sample", out=data))
        emit(bench_train(data, batch_size, steps, lambda: ensure_ray(get_settings())), as_json)


@app.command()
def report(
    run: str = typer.Argument(..., help="MLflow run id of a sweep or a pipeline."),
    fmt: str = typer.Option("md", "--format", help="md, csv or json."),
) -> None:
    """Print the paper-style table of a finished sweep (and write its files and plot)."""
    from pipelines.report.from_run import report_for_run
    from pipelines.specs.names import CELLS_JSON, TABLE_CSV, TABLE_MD
    from pipelines.specs.settings import get_settings

    if fmt not in ("md", "csv", "json"):
        raise SpecError(f"--format must be md, csv or json, got {fmt!r}")
    markdown, out_dir = report_for_run(run, get_settings())
    names = {"md": TABLE_MD, "csv": TABLE_CSV, "json": CELLS_JSON}
    typer.echo(markdown if fmt == "md" else (out_dir / names[fmt]).read_text())
    console.print(f"files and plot: {out_dir}", highlight=False)


@app.command()
def export(
    source: str = typer.Argument(
        ..., metavar="RUN_OR_PATH", help="Pretraining run (runs:/ID or ID), encoder.pt or folder."
    ),
    fmt: str = typer.Option(
        ..., "--format", help="torchvision (resnet50 state dict) or onnx (P, dynamic batch)."
    ),
    out: Path = typer.Option(..., "--out", help="File to write."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write a pretrained P for use outside this repository (docs/EXPORT.md)."""
    from pipelines.export.encoder_export import export_encoder
    from pipelines.specs.settings import get_settings

    emit(export_encoder(source, fmt, out, get_settings(), overwrite=overwrite).to_dict(), as_json)


def _present(kind: str, result: dict[str, Any], as_json: bool) -> None:
    """Print a job's result: JSON, or what a person reads first (the table, for studies)."""
    if as_json or "table_markdown" not in result:
        emit(result, as_json)
        return
    typer.echo(result["table_markdown"])
    extra = ""
    if kind == "sweep":
        extra = f" ({result['trials']} trials, {result['failed_trials']} failed)"
    if kind == "probe":
        extra = f" (accuracy %, {result['val_images']} val images)"
    typer.echo(
        f"{kind} run: {result['mlflow_run_id']}{extra}; report files in {result['report_dir']}"
    )


def _build(kind: JobKind, options: list, config: Path | None, values: dict[str, Any]) -> Spec:
    data = spec_data(options, values, config)
    check_known_kind(data, kind.name)
    return build_spec(kind.spec, data)


def job_command(kind: JobKind) -> click.Command:
    """`selfie <kind>`: every field of the kind's spec as an option, plus --config, --json."""
    options = list(spec_options(kind.spec))

    def callback(config: Path | None, as_json: bool, **values: Any) -> None:
        from pipelines.cli.runner import run_job
        from pipelines.specs.settings import get_settings

        spec = _build(kind, options, config, values)
        with progress_bar():
            result = run_job(kind, spec, get_settings())
        _present(kind.name, result, as_json)

    json_option = click.Option(["--json", "as_json"], is_flag=True, help="Print JSON.")
    return click.Command(
        kind.name,
        callback=callback,
        params=[CONFIG_OPTION, *(o.option for o in options), json_option],
        help=kind.summary,
        short_help=kind.summary,
    )


def parse_spec(kind: JobKind, args: list[str]) -> Spec:
    """The spec `selfie <kind> ARGS` would run, without running it."""
    options = list(spec_options(kind.spec))
    with job_command(kind).make_context(kind.name, list(args)) as ctx:
        values = dict(ctx.params)
    values.pop("as_json", None)
    return _build(kind, options, values.pop("config"), values)


def command_group() -> click.Group:
    """The pipelines' verbs as one click group (typer commands + one command per job kind)."""
    group = typer.main.get_group(app)
    for kind in JOB_KINDS.values():
        group.add_command(job_command(kind))
    return group


def run_cli(group: click.Group) -> None:
    """Invoke a command group; a `SelfieError` becomes one sentence and exit status 2."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(1)
    except SelfieError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exit_status(exc))


def main() -> None:
    run_cli(command_group())


if __name__ == "__main__":
    main()
