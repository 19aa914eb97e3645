"""The `selfie` command line. Thin: parse flags into specs, call the pipeline, print results.

Known failures (bad specs, missing data, unreachable services) print one sentence and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from pipelines.specs import SpecError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Selfie pipelines: ingest, pretrain, sweep, report, pipeline, serve, and the "
    "control-service client (submit, jobs, status, logs, cancel).",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print JSON figures.")
app.add_typer(bench_app, name="bench")

console = Console(stderr=True)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int], None]]:
    """A live count on a terminal; silent when output is piped (CI logs stay readable)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        f"[bold]{label}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)


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


@bench_app.command("data")
def bench_data_cmd(
    data: str = typer.Option(..., help="Ingested data dir."),
    batch_size: int = typer.Option(64, help="Images per batch."),
    batches: int = typer.Option(60, help="Timed batches per setting."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Loader images/s with 1 and 2 DataLoader processes, and the ratio to tiny's training rate."""
    from pipelines.bench.data_bench import bench_data

    emit(bench_data(data, batch_size, batches), as_json)


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
    from pipelines.data.ingest import ingest as run_ingest
    from pipelines.ray_runtime import ensure_ray
    from pipelines.settings import get_settings
    from pipelines.specs import IngestSpec

    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            data = str(Path(tmp) / "digits")
            run_ingest(IngestSpec(source="mnist-sample", out=data))
        emit(bench_train(data, batch_size, steps, lambda: ensure_ray(get_settings())), as_json)


@bench_app.command("service")
def bench_service_cmd(
    clients: int = typer.Option(50, help="Concurrent readers (1..200)."),
    seconds: float = typer.Option(20.0, help="Length of the run (at most 300)."),
    submit: Path | None = typer.Option(None, help="Job file to submit a few times meanwhile."),
    submits: int = typer.Option(3, help="How many submissions during the run."),
    interval: float = typer.Option(0.0, help="Seconds between a client's requests (0: none)."),
    url: str | None = typer.Option(None, "--url", help="Service URL (127.0.0.1 only)."),
    token: str | None = typer.Option(None, "--token", help="API token."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Bounded load on a local control service: reads/s, p50/p99, and any 5xx."""
    from pipelines.settings import get_settings
    from pipelines.specs import load_spec_file
    from services.client import job_request
    from services.load_bench import bench_service

    settings = get_settings()
    body = job_request(load_spec_file(submit)) if submit else None
    result = bench_service(
        url or settings.server_url,
        token or settings.resolved_api_token(),
        clients,
        seconds,
        body,
        submits if body else 0,
        interval,
    )
    emit(result, as_json)


@app.command()
def ingest(
    source: str = typer.Option(
        ..., help="imagefolder:PATH, cifar10:PATH, mnist-sample, synthetic[:COUNT], shards:PATTERN"
    ),
    out: Path = typer.Option(..., help="Output data dir (train/ val/ test/ + manifest.json)."),
    val_fraction: float = typer.Option(0.1, help="Share of each class held out for validation."),
    test_fraction: float = typer.Option(
        0.1, help="Share held out for test when the source has no test split of its own."
    ),
    image_size: int | None = typer.Option(None, help="Resize+centre-crop to this square side."),
    shard_max_count: int = typer.Option(1000, help="Samples per shard at most."),
    shard_max_mb: float = typer.Option(256.0, help="Shard size in MB at most."),
    seed: int = typer.Option(0, help="Seed of the stratified split and shuffles."),
    on_error: str = typer.Option("fail", help="fail: stop at a bad image; skip: count and skip."),
    overwrite: bool = typer.Option(False, help="Replace data already ingested into --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
) -> None:
    """Turn images into WebDataset shards and a manifest."""
    from pipelines.data.ingest import ingest as run_ingest
    from pipelines.specs import IngestSpec, build_spec

    opts = build_spec(
        IngestSpec,
        dict(
            source=source,
            out=out,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            image_size=image_size,
            shard_max_count=shard_max_count,
            shard_max_mb=shard_max_mb,
            seed=seed,
            on_error=on_error,
            overwrite=overwrite,
        ),
    )
    with progress_bar("ingesting") as advance:
        manifest = run_ingest(opts, progress=advance)
    summary = {
        "out": str(out),
        "source": manifest.source,
        "counts": manifest.counts,
        "classes": len(manifest.class_names),
        "image_size": manifest.image_size,
        "shards": {k: len(v) for k, v in manifest.shards.items()},
        "skipped": len(manifest.skipped),
    }
    emit(summary, as_json)
    for item in manifest.skipped[:20]:
        console.print(f"skipped {item.item}: {item.reason}", highlight=False)


def _spec_data(config: Path | None, overrides: dict) -> dict:
    from pipelines.specs import load_spec_file

    data = load_spec_file(config) if config else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return data


@app.command()
def pretrain(
    data: str | None = typer.Option(None, help="Ingested data dir."),
    config: Path | None = typer.Option(None, help="PretrainSpec as YAML or JSON; flags override."),
    preset: str | None = typer.Option(None, help="tiny, small or paper."),
    workers: int | None = typer.Option(None, help="Ray Train workers."),
    cpus_per_worker: int | None = typer.Option(None, help="Default: cluster CPUs / workers."),
    use_gpu: bool | None = typer.Option(None, "--use-gpu/--no-gpu", help="One GPU per worker."),
    epochs: int | None = typer.Option(None, help="Passes over the training split."),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps."),
    batch_size: int | None = typer.Option(None, help="Images per worker per step."),
    mask_fraction: float | None = typer.Option(None, help="Share of patches masked (0, 1)."),
    lr: float | None = typer.Option(None, help="Peak learning rate."),
    checkpoint_every: int | None = typer.Option(None, help="Steps between checkpoints."),
    run_name: str | None = typer.Option(None, help="Name of the run (default: generated)."),
    resume: str | None = typer.Option(None, help="Continue the stopped run of this name."),
    verify: bool | None = typer.Option(None, "--verify", help="Check shard checksums first."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Pretrain Selfie on Ray Train; print the MLflow run id and checkpoint location."""
    from pipelines.pretrain.driver import run_pretrain
    from pipelines.settings import get_settings
    from pipelines.specs import PretrainSpec, build_spec

    fields = _spec_data(
        config,
        {
            "data": data,
            "preset": preset,
            "workers": workers,
            "cpus_per_worker": cpus_per_worker,
            "use_gpu": use_gpu,
            "epochs": epochs,
            "max_steps": max_steps,
            "batch_size": batch_size,
            "mask_fraction": mask_fraction,
            "checkpoint_every": checkpoint_every,
            "run_name": resume or run_name,
            "resume": bool(resume) or None,
            "verify": verify,
        },
    )
    if lr is not None:
        fields["optim"] = {**fields.get("optim", {}), "lr": lr}
    if "data" not in fields:
        raise SpecError("pretrain needs --data DIR (or `data:` in --config)")
    spec = build_spec(PretrainSpec, fields)
    result = run_pretrain(spec, get_settings())
    emit(result.to_dict(), as_json)


@app.command()
def demo(
    workdir: Path = typer.Option(Path("work/demo"), help="Where data, runs and MLflow land."),
    config: Path = typer.Option(Path("configs/demo.yaml"), help="The demo's PipelineSpec."),
    port: int = typer.Option(8000, help="Port for the control service the demo starts."),
) -> None:
    """The main job, as a user runs it: start the control service, submit the demo pipeline
    (ingest the shipped digits, pretrain, sweep, report) over REST, follow its logs, print
    the paper-style table, stop the service."""
    from pipelines.demo_run import run_demo

    run_demo(workdir, config, port, console)


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpecError(f"expected comma-separated numbers, got {text!r}") from None


def _words(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


@app.command()
def sweep(
    data: str | None = typer.Option(None, help="Ingested data dir."),
    encoder: str | None = typer.Option(
        None, help="Pretrained encoder: MLflow run id, encoder.pt, or a pretrain result dir."
    ),
    config: Path | None = typer.Option(None, help="SweepSpec as YAML or JSON; flags override."),
    fractions: str | None = typer.Option(None, help="Labeled fractions, e.g. 0.05,0.1,0.2,1.0"),
    seeds: int | None = typer.Option(None, help="Seeds per cell."),
    encoders: str | None = typer.Option(None, help="Finetune encoders: resnet50,hybrid"),
    inits: str | None = typer.Option(None, help="Inits: scratch,selfie"),
    lr: str | None = typer.Option(None, help="Learning rates searched, e.g. 3e-3,1e-2"),
    weight_decay: str | None = typer.Option(None, help="Weight decays searched."),
    search: str | None = typer.Option(None, help="grid or random."),
    num_samples: int | None = typer.Option(None, help="Random search: draws per cell."),
    asha: bool | None = typer.Option(None, "--asha/--no-asha", help="ASHA early stopping."),
    epochs: int | None = typer.Option(None, help="Finetune epochs per trial."),
    cpus_per_trial: int | None = typer.Option(None, help="CPUs per trial."),
    gpus_per_trial: float | None = typer.Option(None, help="GPUs per trial."),
    run_name: str | None = typer.Option(None, help="Name of the sweep (default: generated)."),
    resume: str | None = typer.Option(None, help="Continue the interrupted sweep of this name."),
    verify: bool | None = typer.Option(None, "--verify", help="Check shard checksums first."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Finetune on labeled fractions with both inits on Ray Tune; print the paper-style table."""
    from pipelines.settings import get_settings
    from pipelines.specs import SweepSpec, build_spec
    from pipelines.sweep.driver import run_sweep

    fields = _spec_data(
        config,
        {
            "data": data,
            "pretrained": encoder,
            "fractions": _floats(fractions),
            "seeds": seeds,
            "encoders": _words(encoders),
            "inits": _words(inits),
            "epochs": epochs,
            "cpus_per_trial": cpus_per_trial,
            "gpus_per_trial": gpus_per_trial,
            "run_name": resume or run_name,
            "resume": bool(resume) or None,
            "verify": verify,
        },
    )
    search_fields = {
        "lr": _floats(lr),
        "weight_decay": _floats(weight_decay),
        "mode": search,
        "num_samples": num_samples,
        "asha": asha,
    }
    overrides = {k: v for k, v in search_fields.items() if v is not None}
    if overrides:
        fields["search"] = {**fields.get("search", {}), **overrides}
    if "data" not in fields:
        raise SpecError("sweep needs --data DIR (or `data:` in --config)")
    spec = build_spec(SweepSpec, fields)
    result = run_sweep(spec, get_settings())
    if as_json:
        emit(result.to_dict(), as_json=True)
        return
    typer.echo(result.table_markdown)
    typer.echo(
        f"sweep run: {result.mlflow_run_id} ({result.trials} trials, "
        f"{result.failed_trials} failed); report files in {result.report_dir}"
    )


@app.command()
def report(
    run: str = typer.Argument(..., help="MLflow run id of a sweep or a pipeline."),
    fmt: str = typer.Option("md", "--format", help="md, csv or json."),
) -> None:
    """Print the paper-style table of a finished sweep (and write its files and plot)."""
    from pipelines.report.from_run import report_for_run
    from pipelines.settings import get_settings

    if fmt not in ("md", "csv", "json"):
        raise SpecError(f"--format must be md, csv or json, got {fmt!r}")
    markdown, out_dir = report_for_run(run, get_settings())
    names = {"md": "table.md", "csv": "table.csv", "json": "results.json"}
    typer.echo(markdown if fmt == "md" else (out_dir / names[fmt]).read_text())
    console.print(f"files and plot: {out_dir}", highlight=False)


@app.command()
def pipeline(
    config: Path = typer.Option(..., help="PipelineSpec as YAML or JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Ingest (if needed), pretrain, sweep and report as one MLflow parent run."""
    from pipelines.pipeline_run import run_pipeline
    from pipelines.settings import get_settings
    from pipelines.specs import PipelineSpec, build_spec

    spec = build_spec(PipelineSpec, _spec_data(config, {}))
    result = run_pipeline(spec, get_settings())
    if as_json:
        emit(result.to_dict(), as_json=True)
        return
    typer.echo(result.table_markdown)
    typer.echo(f"pipeline run: {result.mlflow_run_id}; report files in {result.report_dir}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port."),
) -> None:
    """Run the control service (FastAPI under uvicorn; OpenAPI at /docs)."""
    import uvicorn

    from pipelines.settings import get_settings
    from services.app import create_app

    settings = get_settings()
    token = settings.resolved_api_token()
    if settings.api_token is None:
        console.print(
            f"development token (from {settings.resolved_workdir / 'api_token'}): {token}",
            highlight=False,
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def _client(url: str | None, token: str | None):
    from pipelines.settings import get_settings
    from services.client import SelfieClient

    settings = get_settings()
    return SelfieClient(url or settings.server_url, token or settings.resolved_api_token())


URL_OPTION = typer.Option(None, "--url", help="Service URL (env SELFIE_SERVER_URL).")
TOKEN_OPTION = typer.Option(None, "--token", help="API token (env SELFIE_API_TOKEN).")


def _print_job(job, as_json: bool) -> None:
    if as_json:
        typer.echo(job.model_dump_json(indent=2))
        return
    typer.echo(f"{job.id}  {job.kind:<8} {job.state:<9} {job.name or ''}")
    if job.message:
        typer.echo(f"  message: {job.message}")
    if job.mlflow_run_ids:
        typer.echo(f"  mlflow runs: {', '.join(job.mlflow_run_ids)}")


@app.command()
def submit(
    file: Path = typer.Argument(..., help="Job file: {kind, spec, name} or a spec with `kind`."),
    name: str | None = typer.Option(None, help="Job name."),
    idempotency_key: str | None = typer.Option(None, help="Repeat-safe key."),
    follow: bool = typer.Option(False, help="Stream the job's logs until it ends."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Submit a job to the control service."""
    from pipelines.specs import load_spec_file
    from services.client import job_request

    try:
        body = job_request(load_spec_file(file), name)
    except ValueError as exc:
        raise SpecError(f"{file}: {exc}") from None
    with _client(url, token) as client:
        job = client.submit(
            body["kind"], body["spec"], name=body["name"], idempotency_key=idempotency_key
        )
        _print_job(job, as_json)
        if follow:
            for chunk in client.follow_logs(job.id):
                sys.stdout.write(chunk)
            _print_job(client.wait(job.id, timeout=60), as_json)


@app.command("jobs")
def list_jobs_cmd(
    state: str | None = typer.Option(None, help="PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED."),
    kind: str | None = typer.Option(None, help="pretrain, sweep or pipeline."),
    limit: int = typer.Option(20, help="Jobs per page."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List jobs, newest first."""
    with _client(url, token) as client:
        page = client.jobs(state=state, kind=kind, limit=limit)
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    for job in page.items:
        _print_job(job, as_json=False)


@app.command("status")
def status_cmd(
    job_id: str = typer.Argument(..., help="Job id."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One job's state, message, MLflow runs and result."""
    with _client(url, token) as client:
        _print_job(client.job(job_id), as_json)


@app.command("logs")
def logs_cmd(
    job_id: str = typer.Argument(..., help="Job id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends."),
    tail: int | None = typer.Option(None, help="Last N lines."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """A job's output."""
    with _client(url, token) as client:
        if follow:
            for chunk in client.follow_logs(job_id):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        else:
            sys.stdout.write(client.logs(job_id, tail=tail))


@app.command("cancel")
def cancel_cmd(
    job_id: str = typer.Argument(..., help="Job id."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Stop a pending or running job."""
    with _client(url, token) as client:
        _print_job(client.cancel(job_id), as_json=False)


def main() -> None:
    from pipelines.errors import SelfieError

    try:
        app()
    except SelfieError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
