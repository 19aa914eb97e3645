"""/v1/users: admins issue, list and revoke API keys; anyone asks who they are.

Revoking is `POST /v1/users/{name or key id}/revoke` (as a job's cancel is), not a DELETE on
`/v1/users/{...}`: that path would also match `/v1/users/me`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from services.server.account_models import ApiKeyRecord, Scope
from services.server.api_errors import error_responses
from services.server.api_keys import USER_NAME, AccountError, add_user, list_keys, revoke
from services.server.audit import audited
from services.server.deps import AdminDep, AuthDep, SessionDep, StateDep, UserDep
from services.server.job_store import session_scope

router = APIRouter(
    prefix="/v1/users",
    tags=["users"],
    dependencies=[AuthDep],
    responses=error_responses(401, 403, 422),
)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=USER_NAME.pattern, description="1-64 lowercase letters, digits, '_', '.', '-'."
    )
    scope: Scope = Field(default=Scope.USER, description="admin, user or read_only.")
    expires_days: int | None = Field(
        default=None, ge=1, le=3650, description="Days until the key stops working."
    )


class KeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_id: str
    user: str
    scope: Scope
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewKeyPublic(KeyPublic):
    key: str = Field(description="The API key. Shown this once: only its hash is stored.")


class Me(BaseModel):
    user: str
    scope: Scope
    key_id: str | None


def _public(record: ApiKeyRecord) -> KeyPublic:
    return KeyPublic.model_validate(record)


@router.get("/me", response_model=Me)
async def me(who: UserDep) -> Me:
    """The user and scope of the calling key."""
    return Me(user=who.user, scope=who.scope, key_id=who.key_id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=NewKeyPublic,
    responses=error_responses(400, 409, 413),
)
def create(body: Annotated[UserCreate, Body()], who: AdminDep, state: StateDep) -> NewKeyPublic:
    """Issue a key for a user (one active key per user). The key is in this answer only."""
    with audited(state.sessions, who, f"users.add {body.name}"):
        try:
            with session_scope(state.sessions) as session:
                made = add_user(
                    session=session,
                    name=body.name,
                    scope=body.scope,
                    expires_days=body.expires_days,
                )
                return NewKeyPublic(**_public(made.record).model_dump(), key=made.key)
        except AccountError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.get("", response_model=list[KeyPublic])
def list_all(_who: AdminDep, session: SessionDep) -> list[KeyPublic]:
    """Every key ever issued (hashes never leave the store)."""
    return [_public(r) for r in list_keys(session=session)]


@router.post(
    "/{name_or_key_id}/revoke", response_model=list[KeyPublic], responses=error_responses(404)
)
def revoke_key(
    name_or_key_id: Annotated[str, Path(pattern=USER_NAME.pattern)],
    who: AdminDep,
    state: StateDep,
) -> list[KeyPublic]:
    """Revoke a key by its id, or every key of a user by name: they answer 401 from now on."""
    with audited(state.sessions, who, f"users.revoke {name_or_key_id}"):
        try:
            with session_scope(state.sessions) as session:
                return [_public(r) for r in revoke(session=session, name_or_key_id=name_or_key_id)]
        except AccountError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
