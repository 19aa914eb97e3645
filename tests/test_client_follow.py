"""The client's followed log over real HTTP: an error answer (401, 404) while following is
one sentence, not a traceback (`selfie logs -f`, `selfie submit --follow`, `make demo`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.client.rest_client import SelfieClient, ServiceError
from tests.service_process import TOKEN, ServiceProcess


@pytest.fixture(scope="module")
def plain_service(tmp_path_factory):
    """A real `selfie serve` with the local job backend on SQLite (no Ray)."""
    root = tmp_path_factory.mktemp("follow")
    proc = ServiceProcess(root / "work", None, root).start()
    yield proc
    proc.kill()


def test_following_a_missing_job_raises_the_services_answer(plain_service) -> None:
    with SelfieClient(plain_service.url, TOKEN) as client, pytest.raises(ServiceError) as err:
        list(client.follow_logs("nosuchjob"))
    assert err.value.status_code == 404 and "nosuchjob" in err.value.detail


def test_following_with_a_wrong_token_raises_the_services_answer(plain_service) -> None:
    with SelfieClient(plain_service.url, "wrong") as client, pytest.raises(ServiceError) as err:
        list(client.follow_logs("nosuchjob"))
    assert err.value.status_code in (401, 403)


@pytest.mark.parametrize("extra", [[], ["--raw"]])
def test_logs_follow_prints_one_sentence(plain_service, extra: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "logs", "-f", "nosuchjob", *extra,
         "--url", plain_service.url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "nosuchjob" in out.stderr and "404" in out.stderr


def test_a_long_status_is_one_line_in_a_pipe_and_keeps_the_last_monitor_reading() -> None:
    """Without a terminal rich wraps at 80 columns: `make demo` in CI printed `last` and its
    value on two lines. The pretraining line carries the monitor's last reading."""
    import io
    import json

    from rich.console import Console

    from pipelines.specs.names import PROGRESS_MARKER
    from services.client.job_view import JobView, print_status

    view = JobView()
    record = {"stage": "pretrain", "done": 300, "total": 496, "loss": 0.76,
              "selection_accuracy": 0.65, "knn_u": 0.61, "knn_trunk": 0.72,
              "linear_u": 0.7, "linear_trunk": 0.8}  # fmt: skip
    view.feed(f"(RayTrainWorker pid=1) {PROGRESS_MARKER}{json.dumps(record)}\n")
    out = io.StringIO()
    print_status(Console(file=out, width=80, force_terminal=False), view)
    printed = out.getvalue()
    assert printed.count("\n") == 1 and len(printed) > 100, printed
    assert "knn_u 0.61" in printed and "linear_trunk 0.8" in printed
