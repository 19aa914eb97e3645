"""A typed Python client of the control service (used by the `selfie` client verbs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from pipelines.specs import JOB_KINDS, SpecError
from pipelines.specs.errors import SelfieError
from services.server.job_models import JobList, JobPublic, JobState


class ServiceError(SelfieError):
    """The service answered with an error; the message is its `detail`."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status_code})" if status_code else detail)
        self.status_code = status_code
        self.detail = detail


def job_request(data: dict, name: str | None = None) -> dict:
    """A job file's contents as the body of `POST /v1/jobs`: either `{kind, spec, name}`
    already, or a bare spec whose own `kind` field says what it is."""
    if "spec" in data:
        kind, spec, name = data.get("kind"), data["spec"], name or data.get("name")
    else:
        kind, spec = data.get("kind"), data
    if kind not in JOB_KINDS:
        raise SpecError(f"`kind` must be one of {', '.join(JOB_KINDS)}, got {kind!r}")
    return {"kind": kind, "spec": spec, "name": name}


class SelfieClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SelfieClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            response.read()  # a streamed answer's body is unread until asked for
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(response.status_code, str(detail))
        return response

    def _unreachable(self, exc: httpx.TransportError) -> ServiceError:
        return ServiceError(
            0,
            f"cannot reach the control service at {self.http.base_url} ({exc}): start it "
            "with `selfie serve`, or point SELFIE_SERVER_URL (or --url) at it",
        )

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._check(self.http.request(method, path, **kw))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def submit(
        self, kind: str, spec: dict, name: str | None = None, idempotency_key: str | None = None
    ) -> JobPublic:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"kind": kind, "spec": spec, "name": name}
        return JobPublic.model_validate(
            self._request("POST", "/v1/jobs", json=body, headers=headers).json()
        )

    def jobs(self, **filters: Any) -> JobList:
        params = {k: v for k, v in filters.items() if v is not None}
        return JobList.model_validate(self._request("GET", "/v1/jobs", params=params).json())

    def job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def logs(self, job_id: str, tail: int | None = None) -> str:
        params = {"tail": tail} if tail else {}
        return self._request("GET", f"/v1/jobs/{job_id}/logs", params=params).text

    def follow_logs(self, job_id: str) -> Iterator[str]:
        """The job's log as it grows; errors (401, 404, a lost connection) as `ServiceError`,
        like every other call."""
        try:
            with self.http.stream(
                "GET", f"/v1/jobs/{job_id}/logs", params={"follow": "true"}, timeout=None
            ) as response:
                self._check(response)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def cancel(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def wait(self, job_id: str, timeout: float = 600, poll: float = 1.0) -> JobPublic:
        deadline = time.time() + timeout
        while True:
            job = self.job(job_id)
            if JobState(job.state).finished or time.time() > deadline:
                return job
            time.sleep(poll)

    def run(self, run_id: str) -> dict:
        return self._request("GET", f"/v1/runs/{run_id}").json()

    def health(self) -> dict:
        response = self.http.get("/healthz")
        return response.json()
