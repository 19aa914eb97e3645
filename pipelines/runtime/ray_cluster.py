"""Connecting to Ray: the cluster named by RAY_ADDRESS, or a local one sized to this machine."""

from __future__ import annotations

import logging
import os

from pipelines.runtime.interrupt import keep_sigterm
from pipelines.specs.settings import Settings

log = logging.getLogger(__name__)


def ensure_ray(settings: Settings) -> None:
    """Initialise Ray once per process. The dashboard is kept on: Ray Jobs and Train V2's
    state reporting both talk to it (without it Train V2 floods the logs). A cancel's
    SIGTERM still interrupts the job as Ctrl+C does (`ray.init` would make it exit at once)."""
    import ray

    if ray.is_initialized():
        return
    with keep_sigterm():
        _init_ray(settings)


def _init_ray(settings: Settings) -> None:
    import ray

    if settings.ray_address:
        ray.init(address=settings.ray_address, log_to_driver=True)
        return
    try:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            object_store_memory=settings.ray_object_store_mb * 1024 * 1024,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=True,
        )
        log.info("started a local Ray with %s CPUs", os.cpu_count())
    except ValueError as exc:
        # A local head is already up (e.g. the one `selfie serve` started): join it.
        if "existing cluster" not in str(exc):
            raise
        ray.init(log_to_driver=True)
        log.info("joined the Ray head already running on this machine")
