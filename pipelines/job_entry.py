"""What a Ray Job runs: `python -m pipelines.job_entry`, with the kind and the spec in the
environment (set by the control service from a validated spec, never from a caller's
command line). The last line it prints is `SELFIE_RESULT <json>`, which the service stores.
"""

from __future__ import annotations

import json
import os
import sys

RESULT_MARKER = "SELFIE_RESULT "
KIND_ENV = "SELFIE_JOB_KIND"
SPEC_ENV = "SELFIE_JOB_SPEC"


def main() -> int:
    from pipelines.settings import Settings
    from pipelines.specs import PipelineSpec, PretrainSpec, SpecError, SweepSpec, build_spec

    kind, raw = os.environ.get(KIND_ENV), os.environ.get(SPEC_ENV)
    models = {"pretrain": PretrainSpec, "sweep": SweepSpec, "pipeline": PipelineSpec}
    if kind not in models or raw is None:
        print(f"job entry needs {KIND_ENV} in {sorted(models)} and {SPEC_ENV}", file=sys.stderr)
        return 2
    settings = Settings()
    try:
        spec = build_spec(models[kind], json.loads(raw))
        if kind == "pretrain":
            from pipelines.pretrain.driver import run_pretrain

            result = run_pretrain(spec, settings).to_dict()
        elif kind == "sweep":
            from pipelines.sweep.driver import run_sweep

            result = run_sweep(spec, settings).to_dict()
        else:
            from pipelines.pipeline_run import run_pipeline

            result = run_pipeline(spec, settings).to_dict()
    except (SpecError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
