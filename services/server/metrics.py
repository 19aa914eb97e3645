"""Prometheus metrics: requests by route and status, latencies, jobs by state, and the two
things that stall every request at once: garbage-collection pauses and event-loop lag."""

from __future__ import annotations

import asyncio
import gc
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "selfie_http_requests_total",
            "HTTP requests.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "selfie_http_request_seconds",
            "HTTP request latency.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.jobs = Gauge(
            "selfie_jobs", "Jobs in the store by state.", ["state"], registry=self.registry
        )
        pauses = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
        self.gc_pause = Histogram(
            "selfie_gc_pause_seconds",
            "Garbage-collection pauses (every request waits them out).",
            ["generation"],
            registry=self.registry,
            buckets=pauses,
        )
        self.loop_lag = Histogram(
            "selfie_event_loop_lag_seconds",
            "How late the event loop wakes a 0.1 s timer (every request waits that too).",
            registry=self.registry,
            buckets=pauses,
        )
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self.gc_pause.labels(str(info["generation"])).observe(pause)

    async def watch_runtime(self, period: float = 0.1) -> None:
        """Time GC pauses and event-loop lag until cancelled (run as a task in the lifespan)."""
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                start = time.perf_counter()
                await asyncio.sleep(period)
                self.loop_lag.observe(max(0.0, time.perf_counter() - start - period))
        finally:
            gc.callbacks.remove(self._on_gc)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): counts and times every HTTP request by route."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, path, str(status)).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)
