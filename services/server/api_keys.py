"""Per-user API keys: made, looked up, listed and revoked in the job store.

A key is `sk_<key id>_<43 random url-safe characters>` (256 random bits). Only its sha256
is stored. A slow password hash (bcrypt, argon2) exists to protect low-entropy passwords
from guessing; a 256-bit random key cannot be guessed, so one sha256 is as safe and lets a
request find its key with one indexed lookup instead of a deliberate 100 ms of work.

The bootstrap admin is not a row: it is `SELFIE_API_TOKEN` (compared in constant time), so
a fresh service, `make demo` and the client keep working with the one setting they had.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pipelines.specs.errors import SelfieError
from services.server.account_models import ApiKeyRecord, Scope
from services.server.job_models import utcnow

BOOTSTRAP_USER = "admin"
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_EXPIRY_DAYS = 3650


class AccountError(SelfieError):
    """A user or key request that cannot be done (unknown user, name taken, bad name)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user every job and audit row is recorded against."""

    user: str
    scope: Scope
    key_id: str | None  # None: the bootstrap admin (SELFIE_API_TOKEN)

    @property
    def admin(self) -> bool:
        return self.scope == Scope.ADMIN

    @property
    def may_write(self) -> bool:
        return self.scope != Scope.READ_ONLY


@dataclass(frozen=True)
class NewKey:
    record: ApiKeyRecord
    key: str  # shown once; never stored


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise AccountError(
            f"user name {name[:80]!r} is not allowed: use 1-64 lowercase letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    if name == BOOTSTRAP_USER:
        raise AccountError(
            f"the name {BOOTSTRAP_USER!r} is the bootstrap admin (SELFIE_API_TOKEN): choose "
            "another name"
        )
    return name


def active_key(*, session: Session, user: str) -> ApiKeyRecord | None:
    now = utcnow()
    return session.scalar(
        select(ApiKeyRecord).where(
            ApiKeyRecord.user == user,
            ApiKeyRecord.revoked_at.is_(None),
            or_(ApiKeyRecord.expires_at.is_(None), ApiKeyRecord.expires_at > now),
        )
    )


def add_user(*, session: Session, name: str, scope: Scope, expires_days: int | None) -> NewKey:
    """A new key for `name` (one active key per user: revoke the old one to rotate)."""
    check_user_name(name)
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise AccountError(f"expires_days must lie in 1..{MAX_EXPIRY_DAYS}, got {expires_days}")
    if active_key(session=session, user=name) is not None:
        raise AccountError(
            f"user {name!r} already has an active key: revoke it first "
            f"(`selfie users revoke {name}`) to issue a new one"
        )
    key_id = secrets.token_hex(6)
    key = f"sk_{key_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    record = ApiKeyRecord(
        key_id=key_id,
        user=name,
        scope=Scope(scope).value,
        key_hash=key_hash(key),
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    session.add(record)
    session.flush()
    return NewKey(record, key)


def list_keys(*, session: Session) -> list[ApiKeyRecord]:
    return list(session.scalars(select(ApiKeyRecord).order_by(ApiKeyRecord.created_at)))


def revoke(*, session: Session, name_or_key_id: str) -> list[ApiKeyRecord]:
    """Revoke the key with this id, or every unrevoked key of the user with this name."""
    found = list(
        session.scalars(
            select(ApiKeyRecord).where(
                or_(ApiKeyRecord.key_id == name_or_key_id, ApiKeyRecord.user == name_or_key_id),
                ApiKeyRecord.revoked_at.is_(None),
            )
        )
    )
    if not found:
        raise AccountError(
            f"no unrevoked key or user {name_or_key_id[:80]!r}: `selfie users list` shows them"
        )
    for record in found:
        record.revoked_at = utcnow()
    return found


def authenticate(*, session: Session, presented: str, bootstrap_token: str) -> Principal | None:
    """The caller behind a bearer key, or None when the key is unknown, revoked or expired."""
    if hmac.compare_digest(presented.encode(), bootstrap_token.encode()):
        return Principal(BOOTSTRAP_USER, Scope.ADMIN, None)
    if not presented.startswith("sk_") or len(presented) > 200:
        return None
    record = session.scalar(
        select(ApiKeyRecord).where(ApiKeyRecord.key_hash == key_hash(presented))
    )
    if record is None or record.revoked_at is not None:
        return None
    if record.expires_at is not None and record.expires_at <= utcnow():
        return None
    return Principal(record.user, Scope(record.scope), record.key_id)
