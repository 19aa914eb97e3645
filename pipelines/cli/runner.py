"""Running one job in this process, the one way `selfie <kind>` and the Ray job entry
(`pipelines.cli.job_entry`) both do it: the kind's runner from the registry, SIGTERM (a REST
cancel) handled as Ctrl+C, and one exit status for each way a job can end.

A job stopped by its user, by Ctrl+C or by a cancel, raises `Interrupted` whatever it was
doing; its MLflow run is then KILLED (`runtime.tracked_run`), and the process exits with
`EXIT_INTERRUPTED` from the terminal and from Ray alike.
"""

from __future__ import annotations

from typing import Any

from pipelines.runtime.interrupt import sigterm_as_ctrl_c
from pipelines.specs import JobKind, Spec
from pipelines.specs.common import TrackedRunSpec
from pipelines.specs.errors import Interrupted, SelfieError
from pipelines.specs.settings import Settings

EXIT_OK = 0
EXIT_USER_ERROR = 2  # a `SelfieError`: the input, data or environment needs fixing
EXIT_INTERRUPTED = 130  # stopped by its user (the shell's status for Ctrl+C)


def run_job(kind: JobKind, spec: Spec, settings: Settings) -> dict[str, Any]:
    """Run one job to its result (as a dict); `Interrupted` when Ctrl+C or SIGTERM stopped
    it. Its progress goes where `runtime.progress` says (the caller may show it)."""
    with sigterm_as_ctrl_c():
        try:
            return kind.run(spec, settings).to_dict()
        except KeyboardInterrupt:
            again = ""
            if isinstance(spec, TrackedRunSpec):
                again = (
                    ": its MLflow run is marked KILLED, and the same spec with resume and the "
                    "run's name continues it"
                )
            raise Interrupted(
                f"the {kind.name} job was stopped (Ctrl+C or a cancel) before it finished{again}"
            ) from None


def exit_status(error: SelfieError) -> int:
    """The process's exit status for an error a user can act on."""
    return EXIT_INTERRUPTED if isinstance(error, Interrupted) else EXIT_USER_ERROR
