"""Names and folders a job claims for its user: an MLflow run name (per experiment) and the
data dir an ingest writes. Claimed at submit, in the transaction that records the job, so
another user can neither resume and write into the run nor overwrite the data.

Names and folders with no recorded owner (made before users existed, or outside the
service) are treated as someone else's when a job would write into what is there (resume,
overwrite): only an admin may."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy.orm import Session

from pipelines.specs import IngestSpec, PipelineSpec
from pipelines.specs.common import MANIFEST_NAME, Spec, TrackedRunSpec
from pipelines.specs.errors import SelfieError
from services.server.account_models import DataDirRecord, RunNameRecord
from services.server.api_keys import Principal


class NotYours(SelfieError):
    """A job that would write into another user's run or data."""


def _claim_run_name(session: Session, who: Principal, spec: TrackedRunSpec) -> None:
    if not spec.run_name:
        return
    key = (spec.experiment, spec.run_name)
    found = session.get(RunNameRecord, key)
    where = f"run {spec.run_name!r} of experiment {spec.experiment[:80]!r}"
    if found is not None and found.owner != who.user and not who.admin:
        raise NotYours(f"{where} belongs to another user: choose another run_name")
    if found is None:
        if spec.resume and not who.admin:
            raise NotYours(
                f"{where} was not started by you through this service, so it cannot be "
                "resumed with your key: resume a run you started, or ask an admin"
            )
        session.add(
            RunNameRecord(experiment=spec.experiment, run_name=spec.run_name, owner=who.user)
        )


def _written_dir(spec: Spec) -> tuple[str, bool] | None:
    """(data dir the job writes, whether it replaces what is there)."""
    if isinstance(spec, IngestSpec):
        return spec.out, spec.overwrite
    if isinstance(spec, PipelineSpec) and spec.source:
        return spec.data, False
    return None


def _claim_data_dir(session: Session, who: Principal, spec: Spec) -> None:
    written = _written_dir(spec)
    if written is None:
        return
    text, replaces = written
    path = Path(text).expanduser().resolve()
    key = hashlib.sha256(str(path).encode()).hexdigest()
    found = session.get(DataDirRecord, key)
    if replaces and not who.admin:
        if found is not None and found.owner != who.user:
            raise NotYours(
                f"spec.out {text[:200]!r} holds another user's data, which overwrite would "
                "replace: write to another folder"
            )
        if found is None and (path / MANIFEST_NAME).exists():
            raise NotYours(
                f"spec.out {text[:200]!r} holds data no job of yours wrote, which overwrite "
                "would replace: write to another folder, or ask an admin"
            )
    if found is None:
        session.add(DataDirRecord(path_hash=key, path=str(path), owner=who.user))


def claim(session: Session, who: Principal, spec: Spec) -> None:
    """Refuse (`NotYours`) or record what the job will write for its user."""
    if isinstance(spec, TrackedRunSpec):
        _claim_run_name(session, who, spec)
    _claim_data_dir(session, who, spec)
    session.flush()
