"""What a Ray Job runs: `python -m pipelines.cli.job_entry`, with the kind and the spec in the
environment (set by the control service from a validated spec, never from a caller's
command line). The last line it prints is `SELFIE_RESULT <json>`, which the service stores.

The entry trusts nothing it received: the spec must hash to the digest the service recorded,
validate again, and every path it names must lie under the data roots as seen from this node
(symlinks and mounts can differ from the service's), before anything runs.
"""

from __future__ import annotations

import json
import os
import sys

from pipelines.specs.names import JOB_KIND_ENV, JOB_SPEC_DIGEST_ENV, JOB_SPEC_ENV, RESULT_MARKER


def main() -> int:
    from pipelines.cli.runner import exit_status, run_job
    from pipelines.specs import JOB_KINDS, build_spec
    from pipelines.specs.errors import SelfieError
    from pipelines.specs.paths import confine
    from pipelines.specs.settings import get_settings
    from pipelines.specs.transport import decode_spec

    kind = os.environ.get(JOB_KIND_ENV)
    encoded, digest = os.environ.get(JOB_SPEC_ENV), os.environ.get(JOB_SPEC_DIGEST_ENV)
    if kind not in JOB_KINDS or encoded is None or digest is None:
        print(
            f"error: job entry needs {JOB_KIND_ENV} in {sorted(JOB_KINDS)}, {JOB_SPEC_ENV} and "
            f"{JOB_SPEC_DIGEST_ENV}: submit jobs through the service",
            file=sys.stderr,
        )
        return 2
    job = JOB_KINDS[kind]
    try:
        settings = get_settings()
        confinement = settings.confinement()
        if confinement is None:
            raise SelfieError(
                "job entry needs SELFIE_DATA_ROOTS (the service sets it): submit jobs through "
                "the service"
            )
        spec = build_spec(job.spec, decode_spec(encoded, digest))
        confine(spec, confinement)
        result = run_job(job, spec, settings)
    except SelfieError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exit_status(exc)
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
