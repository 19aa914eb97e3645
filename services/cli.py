"""The `selfie` command: the control service's verbs (serve, the client verbs, demo, the
service benchmark) beside the pipelines' verbs, which it mounts from `pipelines.cli.main`.

The pipelines know nothing of the service; the service's command is the one users run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from pipelines.cli.main import command_group, console, emit, run_cli
from pipelines.specs import load_spec_file
from services.client.rest_client import SelfieClient
from services.server.job_models import JobPublic
from services.server.settings import get_service_settings
from services.server.store_files import PRIVATE_UMASK, private_dir
from services.users_cli import users_app

app = typer.Typer(add_completion=False)

URL_OPTION = typer.Option(None, "--url", help="Service URL (env SELFIE_SERVER_URL).")
TOKEN_OPTION = typer.Option(None, "--token", help="API key (env SELFIE_API_TOKEN).")
RAW_OPTION = typer.Option(False, "--raw", help="The job's raw log instead of the live view.")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port."),
) -> None:
    """Run the control service (FastAPI under uvicorn; OpenAPI at /docs)."""
    import uvicorn

    from services.server.app import create_app

    # Everything the service and its local jobs create (token, job store, logs, MLflow's
    # SQLite) is private to this user from creation: no chmod-after window.
    os.umask(PRIVATE_UMASK)
    settings = get_service_settings()
    private_dir(settings.resolved_workdir)
    settings.check_secrets()  # production: strong, distinct tokens, or one sentence here
    token = settings.resolved_api_token()
    if settings.api_token is None:
        console.print(
            f"development token (from {settings.resolved_workdir / 'api_token'}): {token}",
            highlight=False,
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def _client(url: str | None, token: str | None) -> SelfieClient:
    settings = get_service_settings()
    return SelfieClient(url or settings.server_url, token or settings.resolved_api_token())


def _print_job(job: JobPublic, as_json: bool) -> None:
    if as_json:
        typer.echo(job.model_dump_json(indent=2))
        return
    typer.echo(f"{job.id}  {job.kind:<8} {job.state:<9} {job.name or ''}")
    if job.message:
        typer.echo(f"  message: {job.message}")
    if job.mlflow_run_ids:
        typer.echo(f"  mlflow runs: {', '.join(job.mlflow_run_ids)}")


def _follow(client: SelfieClient, job_id: str, raw: bool) -> None:
    if raw:
        for chunk in client.follow_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        return
    from services.client.job_view import follow_live

    follow_live(client, job_id, console)


@app.command()
def submit(
    file: Path = typer.Argument(..., help="Job file: {kind, spec, name} or a spec with `kind`."),
    name: str | None = typer.Option(None, help="Job name."),
    idempotency_key: str | None = typer.Option(None, help="Repeat-safe key."),
    follow: bool = typer.Option(False, help="Follow the job until it ends."),
    raw: bool = RAW_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Submit a job to the control service."""
    from services.client.rest_client import job_request

    body = job_request(load_spec_file(file), name)
    with _client(url, token) as client:
        job = client.submit(
            body["kind"], body["spec"], name=body["name"], idempotency_key=idempotency_key
        )
        _print_job(job, as_json)
        if follow:
            _follow(client, job.id, raw)
            _print_job(client.wait(job.id, timeout=60), as_json)


@app.command("jobs")
def list_jobs_cmd(
    state: str | None = typer.Option(None, help="PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED."),
    kind: str | None = typer.Option(None, help="ingest, pretrain, sweep or pipeline."),
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
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow until the job ends."),
    raw: bool = RAW_OPTION,
    tail: int | None = typer.Option(None, help="Last N lines."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """A job's output; with --follow, a live view of its progress (or the raw log)."""
    with _client(url, token) as client:
        if follow:
            _follow(client, job_id, raw)
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


@app.command()
def demo(
    workdir: Path = typer.Option(Path("work/demo"), help="Where data, runs and MLflow land."),
    config: Path = typer.Option(Path("configs/demo.yaml"), help="The demo's PipelineSpec."),
    port: int = typer.Option(8000, help="Port for the control service the demo starts."),
    raw: bool = RAW_OPTION,
) -> None:
    """The main job, as a user runs it: start the control service, submit the demo pipeline
    (ingest the shipped digits, pretrain, sweep, report) over REST, follow it, print the
    paper-style table, stop the service."""
    from services.client.demo_run import run_demo

    run_demo(workdir, config, port, console, raw=raw)


def bench_service_cmd(
    clients: int = typer.Option(50, help="Concurrent readers (1..200)."),
    seconds: float = typer.Option(20.0, help="Length of the run (at most 300)."),
    submit: Path | None = typer.Option(None, help="Job file to submit a few times meanwhile."),
    submits: int = typer.Option(3, help="How many submissions during the run."),
    interval: float = typer.Option(0.0, help="Seconds between a client's requests (0: none)."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Bounded load on a local control service: reads/s, p50/p99, and any 5xx."""
    from services.client.bench.service_load import bench_service
    from services.client.rest_client import job_request

    settings = get_service_settings()
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


def selfie_group():
    """The one `selfie` command: the pipelines' verbs, then the service's."""
    group = command_group()
    group.help = (
        "Selfie pipelines: ingest, pretrain, sweep, pipeline, report, benchmarks; the control "
        "service (serve), its API keys (users) and its client verbs (submit, jobs, status, logs, "
        "cancel); demo."
    )
    service = typer.main.get_group(app)
    for name, command in service.commands.items():
        group.add_command(command, name)
    users = typer.main.get_group(users_app)
    users.name = "users"  # the help table lists a command by its own name, not the key
    group.add_command(users)
    bench = group.commands["bench"]
    bench.add_command(typer.main.get_command(_bench_service_app()), "service")
    return group


def _bench_service_app() -> typer.Typer:
    one = typer.Typer(add_completion=False)
    one.command("service")(bench_service_cmd)
    return one


def main() -> None:
    run_cli(selfie_group())


if __name__ == "__main__":
    main()
