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
