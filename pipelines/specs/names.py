"""Names that more than one process reads: MLflow tags, report files, result files and the
job entrypoint's environment. The service reads them too, so this module imports nothing."""

# MLflow tags our drivers set (`selfie.*`), read back by the report and the service.
RUN_NAME_TAG = "selfie.run_name"
KIND_TAG = "selfie.kind"
PRETRAIN_RUN_TAG = "selfie.pretrain_run_id"  # run ids, comma-separated: see run_ids_tag
SWEEP_RUN_TAG = "selfie.sweep_run_id"
WEIGHTS_TAG = "selfie.pretrained"  # the weights a sweep finetunes, a JSON list of locations
FAILED_TRIALS_TAG = "selfie.failed_trials"
TRIAL_TAG = "selfie.trial_id"
PRESET_TAG = "selfie.preset"
MANIFEST_DIGEST_TAG = "selfie.manifest_digest"
PARENT_RUN_TAG = "mlflow.parentRunId"


def run_ids_tag(run_ids: list[str]) -> str:
    """Several run ids in one tag value (run ids are hex, so a comma cannot be in one)."""
    return ",".join(run_ids)


def run_ids_of(tag_value: str | None) -> list[str]:
    return [i for i in (tag_value or "").split(",") if i]


# The report: files written to `<workdir>/results/<run>/` and logged under `report/`.
REPORT_ARTIFACT_DIR = "report"
TABLE_MD = "table.md"
TABLE_CSV = "table.csv"
CELLS_JSON = "results.json"
GAIN_PLOT = "accuracy_gain.png"
REPORT_FILES = (TABLE_MD, TABLE_CSV, CELLS_JSON, GAIN_PLOT)

# Every driver writes its result here, under `<workdir>/results/<experiment>/<run name>/`.
RESULT_FILE = "result.json"
ENCODER_ARTIFACT_DIR = "encoder"

# The Ray Job entrypoint (`python -m pipelines.cli.job_entry`): kind and spec come in through the
# environment (the spec as base64 with its sha256, see `transport`), the result goes out as the
# last line of the log.
JOB_KIND_ENV = "SELFIE_JOB_KIND"
JOB_SPEC_ENV = "SELFIE_JOB_SPEC_B64"
JOB_SPEC_DIGEST_ENV = "SELFIE_JOB_SPEC_SHA256"
RESULT_MARKER = "SELFIE_RESULT "

# Progress lines a job prints for the live view (`selfie logs -f`): the marker, then JSON.
PROGRESS_MARKER = "SELFIE_PROGRESS "
# Set in a job's environment (by the service's backends): only jobs print progress lines,
# so a `selfie pretrain --json` run in a terminal prints its result alone.
PROGRESS_ENV = "SELFIE_PROGRESS_LINES"
