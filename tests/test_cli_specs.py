"""The CLI is generated from the spec models: every field is a flag, flags and config files
build the same spec the REST API validates, and bad values are one sentence."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from pipelines.cli.main import parse_spec
from pipelines.cli.spec_options import spec_options
from pipelines.specs import JOB_KINDS, FileWeights, RunWeights, SpecError
from services.server.job_models import JobCreate


def _leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = set()
    for name, field in model.model_fields.items():
        if name == "kind":
            continue
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _leaf_paths(annotation, (*prefix, name))
        elif len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            paths |= _leaf_paths(args[0], (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


@pytest.mark.parametrize("kind", sorted(JOB_KINDS))
def test_every_spec_field_has_a_flag_and_a_rest_field(kind: str) -> None:
    model = JOB_KINDS[kind].spec
    assert {o.path for o in spec_options(model)} == _leaf_paths(model)
    schema = TypeAdapter(JobCreate).json_schema()
    title = f"{model.__name__.removesuffix('Spec')}JobCreate"
    assert title in schema["$defs"], "each registered kind is a REST job body"
    assert schema["$defs"][model.__name__]["properties"].keys() >= {
        p[0] for p in _leaf_paths(model)
    }


def test_flags_build_the_spec_with_nested_sections_lists_and_none(tmp_path: Path) -> None:
    spec = parse_spec(
        JOB_KINDS["pretrain"],
        ["--data", "d", "--optim.lr", "1e-3", "--no-pos-on-visible", "--register-model", "none",
         "--workers", "2", "--run-name", "r1", "--resume"],
    )  # fmt: skip
    assert spec.optim.lr == 1e-3 and spec.optim.weight_decay == 0.05
    assert spec.pos_on_visible is False and spec.register_model is None
    assert spec.workers == 2 and spec.resume and spec.run_name == "r1"

    sweep = parse_spec(
        JOB_KINDS["sweep"],
        ["--data", "d", "--fractions", "0.2,0.05", "--search.lr", "1e-3,3e-3",
         "--architectures", "hybrid", "--pretrained", "runs:/" + "ab" * 16],
    )  # fmt: skip
    assert sweep.fractions == [0.05, 0.2] and sweep.search.lr == [1e-3, 3e-3]
    assert sweep.architectures == ["hybrid"] and sweep.pretrained == [RunWeights(run_id="ab" * 16)]
    file_weights = parse_spec(JOB_KINDS["sweep"], ["--data", "d", "--pretrained", "enc.pt"])
    assert file_weights.pretrained == [FileWeights(path="enc.pt")]
    two = parse_spec(
        JOB_KINDS["sweep"], ["--data", "d", "--pretrained", "a/enc.pt,runs:/" + "cd" * 16]
    )
    assert two.pretrained == [FileWeights(path="a/enc.pt"), RunWeights(run_id="cd" * 16)]


def test_config_file_then_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": "d",
                "source": "mnist-sample",
                "pretrain": {"epochs": 3, "optim": {"lr": 0.01}},
                "sweep": {"seeds": 2, "search": {"lr": [0.1]}},
            }
        )
    )
    spec = parse_spec(
        JOB_KINDS["pipeline"],
        ["--config", str(config), "--pretrain.optim.lr", "0.02", "--sweep.seeds", "4"],
    )
    assert spec.pretrain.epochs == 3 and spec.pretrain.optim.lr == 0.02
    assert spec.sweep.seeds == 4 and spec.sweep.search.lr == [0.1]
    assert spec.pretrain_spec(0, "n").optim.lr == 0.02
    assert spec.pretrain_spec(1, "n").seed == spec.pretrain.seed + 1
    with pytest.raises(SpecError, match="holds a 'sweep' spec"):
        config.write_text(yaml.safe_dump({"kind": "sweep", "data": "d"}))
        parse_spec(JOB_KINDS["pretrain"], ["--config", str(config)])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["pretrain", "--data", "d", "--epochs", "many"],
            "epochs: Input should be a valid integer",
        ),
        (["pretrain", "--data", "d", "--optim.lr", "-1"], "optim.lr"),
        (["sweep", "--data", "d", "--inits", "selfie"], "needs pretrained weights"),
        (["pretrain", "--preset", "tiny"], "data: Field required"),
        (["pretrain", "--data", "d", "--resume"], "resume needs run_name"),
    ],
)
def test_bad_values_are_one_sentence_and_exit_2(args: list[str], needle: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2


def test_pipelines_cli_runs_alone_and_the_selfie_command_mounts_it() -> None:
    alone = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "--help"], capture_output=True, text=True
    )
    assert alone.returncode == 0 and "serve" not in alone.stdout
    full = subprocess.run(
        [sys.executable, "-m", "services.cli", "--help"], capture_output=True, text=True
    )
    listed = {line.split()[1] for line in full.stdout.splitlines() if len(line.split()) > 2}
    for verb in ("ingest", "pretrain", "sweep", "pipeline", "report", "serve", "submit", "logs",
                 "users", "export", "probe"):  # fmt: skip
        assert verb in listed, f"`selfie --help` lists no {verb!r}"
