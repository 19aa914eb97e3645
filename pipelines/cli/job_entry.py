"""What a Ray Job runs: `python -m pipelines.cli.job_entry`, with the kind and the spec in the
environment (set by the control service from a validated spec, never from a caller's
command line). The last line it prints is `SELFIE_RESULT <json>`, which the service stores.
"""

from __future__ import annotations

import json
import os
import sys

from pipelines.specs.names import JOB_KIND_ENV, JOB_SPEC_ENV, RESULT_MARKER


def main() -> int:
    from pipelines.cli.runner import exit_status, run_job
    from pipelines.specs import JOB_KINDS, build_spec
    from pipelines.specs.errors import SelfieError
    from pipelines.specs.settings import Settings

    kind, raw = os.environ.get(JOB_KIND_ENV), os.environ.get(JOB_SPEC_ENV)
    if kind not in JOB_KINDS or raw is None:
        print(
            f"job entry needs {JOB_KIND_ENV} in {sorted(JOB_KINDS)} and {JOB_SPEC_ENV}",
            file=sys.stderr,
        )
        return 2
    job = JOB_KINDS[kind]
    try:
        spec = build_spec(job.spec, json.loads(raw))
        result = run_job(job, spec, Settings())
    except SelfieError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exit_status(exc)
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
