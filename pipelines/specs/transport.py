"""How a checked spec travels from the service to its job: canonical JSON, base64 in the
environment, with its sha256 beside it.

Ray expands `${VAR}` in a job's `runtime_env` env vars, so a spec passed as JSON there is
not the spec the service checked (`out: ".../data-${HOME}"` wrote `data-/root`). Base64 holds
no `$`, and the job entry refuses what does not hash to the digest the service recorded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from pipelines.specs.errors import SelfieError


class SpecTampered(SelfieError):
    """The spec a job received is not the one the service checked."""


def canonical_spec(spec: dict) -> bytes:
    """One byte string per spec: sorted keys, no spaces, ASCII only."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def spec_digest(spec: dict) -> str:
    return hashlib.sha256(canonical_spec(spec)).hexdigest()


def encode_spec(spec: dict) -> tuple[str, str]:
    """(base64 of the canonical JSON, its sha256): the two values a job's environment gets."""
    raw = canonical_spec(spec)
    return base64.b64encode(raw).decode("ascii"), hashlib.sha256(raw).hexdigest()


def decode_spec(encoded: str, digest: str) -> dict:
    """The spec the service sent, or SpecTampered when the bytes do not match its digest."""
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SpecTampered(
            "the job's spec is not valid base64, so it is not the spec the service checked: "
            "resubmit the job through the service"
        ) from None
    if hashlib.sha256(raw).hexdigest() != digest:
        raise SpecTampered(
            "the job's spec does not match the sha256 digest the service recorded, so it was "
            "changed on the way: resubmit the job through the service"
        )
    return json.loads(raw)
