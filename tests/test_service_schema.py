"""Schemathesis against the live service's OpenAPI schema (real uvicorn, Ray and MLflow):
generated valid and invalid requests for every operation, then stateful sequences following
the schema's links. Zero 5xx, and every answer within the documented statuses, media types
and bodies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.service_process import TOKEN

pytestmark = pytest.mark.ray


def test_schemathesis_finds_no_server_error_and_no_schema_break(service, tmp_path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(cli), "run", f"{service.url}/openapi.json",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--max-examples", "40", "--seed", "20261123",
        # A schema-valid spec is still refused when its data lies outside the data roots,
        # a rule of the deployment that no schema carries: that one check is left out.
        "--exclude-checks", "positive_data_acceptance",
        "--request-timeout", "30",
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=500)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "generated" in run.stdout
