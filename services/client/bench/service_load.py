"""`selfie bench service`: a bounded load run against a control service on this machine.

N concurrent clients alternate between listing jobs and reading one job's status for a
fixed number of seconds while a few jobs are submitted; reports requests/s, p50/p99 read
latency, and every non-2xx answer. With `interval` 0 each client sends its next request at
once (closed loop: this measures capacity, and latency is then concurrency / throughput);
with an interval each client polls at that period, starting at a random phase (what
status-watching clients do). Bounded in clients, seconds and submissions, and meant for
127.0.0.1 only.

The readers speak HTTP/1.1 over one keep-alive connection each, written straight on asyncio
streams: a general client such as httpx spends about a millisecond of CPU per request, and
on a two-core machine the load generator then starves the service it is measuring.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from urllib.parse import urlparse

import httpx

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# A connection refused or cut, or an answer that is not the HTTP this reader expects.
READ_ERRORS = (OSError, asyncio.IncompleteReadError, StopIteration, ValueError)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class KeepAliveReader:
    """One client's connection: GET requests answered with a Content-Length body."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        try:
            writer.write(f"GET {path} HTTP/1.1\r\n{self.headers}".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = next(
                int(line.split(":", 1)[1])
                for line in lines[1:]
                if line.lower().startswith("content-length:")
            )
            body = await reader.readexactly(length)
        except READ_ERRORS:
            await self.close()
            raise
        return status, body

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _run(
    url: str,
    token: str,
    clients: int,
    seconds: float,
    submit_body: dict | None,
    submits: int,
    interval: float,
) -> dict:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        listed = (await http.get("/v1/jobs", params={"limit": 1})).json()["items"]
        job_id = listed[0]["id"] if listed else None
        deadline = time.perf_counter() + seconds
        phases = random.Random(0)

        async def reader(i: int) -> None:
            connection = KeepAliveReader(host, port, token)
            if interval:  # independent pollers: each starts at its own phase of the period
                await asyncio.sleep(phases.uniform(0, interval))
            n = 0
            while time.perf_counter() < deadline:
                path = f"/v1/jobs/{job_id}" if (job_id and (i + n) % 2) else "/v1/jobs"
                start = time.perf_counter()
                try:
                    status, _ = await connection.get(path)
                    latencies.append(time.perf_counter() - start)
                    statuses[status] = statuses.get(status, 0) + 1
                except READ_ERRORS as exc:
                    errors.append(type(exc).__name__)
                n += 1
                if interval:
                    await asyncio.sleep(max(0.0, interval - (time.perf_counter() - start)))
            await connection.close()

        async def submitter() -> None:
            for k in range(submits):
                response = await http.post(
                    "/v1/jobs",
                    json=submit_body,
                    headers={"Idempotency-Key": f"load-{k}-{time.time()}"},
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                await asyncio.sleep(seconds / max(submits, 1))

        tasks = [reader(i) for i in range(clients)]
        if submit_body and submits:
            tasks.append(submitter())
        wall = time.perf_counter()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - wall
    server_errors = sum(c for s, c in statuses.items() if s >= 500)
    return {
        "benchmark": "service",
        "url": url,
        "clients": clients,
        "interval_s": interval,
        "seconds": round(wall, 2),
        "reads": len(latencies),
        "reads_per_s": len(latencies) / wall,
        "read_p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "read_p99_ms": 1000 * _percentile(latencies, 0.99),
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": server_errors,
        "transport_errors": len(errors),
    }


def bench_service(
    url: str,
    token: str,
    clients: int = 50,
    seconds: float = 20.0,
    submit_body: dict | None = None,
    submits: int = 3,
    interval: float = 0.0,
) -> dict:
    host = urlparse(url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise ValueError(f"load runs target this machine only (127.0.0.1), not {host!r}")
    if not 1 <= clients <= 200 or not 0 < seconds <= 300:
        raise ValueError("clients must lie in 1..200 and seconds in (0, 300]")
    if interval < 0:
        raise ValueError("interval must be >= 0 seconds")
    return asyncio.run(_run(url, token, clients, seconds, submit_body, submits, interval))
