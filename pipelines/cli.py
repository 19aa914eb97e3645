"""The `selfie` command line. Thin: parse flags into specs, call the pipeline, print results.

Known failures (bad specs, missing data, unreachable services) print one sentence and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console

from pipelines.specs import SpecError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print JSON figures.")
app.add_typer(bench_app, name="bench")

console = Console(stderr=True)


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


def main() -> None:
    try:
        app()
    except (SpecError, ValueError, FileNotFoundError, FileExistsError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
