"""`selfie users add|list|revoke`: API keys, managed on the job store directly (the one
`selfie serve` uses, from the same settings), so the first admin needs no running service."""

from __future__ import annotations

import os

import typer

from services.server import audit
from services.server.account_models import Scope
from services.server.api_keys import add_user, list_keys, revoke
from services.server.job_store import make_engine, session_factory, session_scope
from services.server.settings import get_service_settings
from services.server.store_files import PRIVATE_UMASK, private_dir

users_app = typer.Typer(add_completion=False, help="API keys: add, list, revoke.")


def _sessions():
    os.umask(PRIVATE_UMASK)
    settings = get_service_settings()
    private_dir(settings.resolved_workdir)
    return session_factory(make_engine(settings.resolved_database_url))


def _actor() -> str:
    """Who ran the command, for the audit trail: the OS user on the store's host."""
    import getpass

    return f"cli:{getpass.getuser()}"[:64]


@users_app.command("add")
def add(
    name: str = typer.Argument(..., help="User name (lowercase letters, digits, _ . -)."),
    admin: bool = typer.Option(False, "--admin", help="May see and manage every job and user."),
    read_only: bool = typer.Option(False, "--read-only", help="May list and read, not submit."),
    expires_days: int | None = typer.Option(None, help="Days until the key stops working."),
) -> None:
    """Issue a user's API key; it is printed this once (only its hash is stored)."""
    if admin and read_only:
        raise typer.BadParameter("give --admin or --read-only, not both")
    scope = Scope.ADMIN if admin else Scope.READ_ONLY if read_only else Scope.USER
    sessions = _sessions()
    with session_scope(sessions) as session:
        made = add_user(session=session, name=name, scope=scope, expires_days=expires_days)
        record, key = made.record, made.key
    audit.record(sessions, _actor(), f"users.add {name}", None, "ok")
    expiry = record.expires_at.isoformat() if record.expires_at else "never"
    # The key alone on stdout (for `KEY=$(selfie users add ...)`), the rest on stderr.
    typer.echo(
        f"user {record.user} ({record.scope}), key id {record.key_id}, expires {expiry}; "
        "the key, shown this once:",
        err=True,
    )
    typer.echo(key)


@users_app.command("list")
def list_cmd() -> None:
    """Every key: id, user, scope, created, expires, revoked."""
    with session_scope(_sessions()) as session:
        keys = list_keys(session=session)
        if not keys:
            typer.echo(
                "no API keys yet: only the bootstrap SELFIE_API_TOKEN answers; "
                "add one with `selfie users add NAME`"
            )
        for r in keys:
            expires = r.expires_at.date().isoformat() if r.expires_at else "-"
            revoked = r.revoked_at.date().isoformat() if r.revoked_at else "-"
            typer.echo(
                f"{r.key_id}  {r.user:<20} {r.scope:<9} created {r.created_at.date()}  "
                f"expires {expires}  revoked {revoked}"
            )


@users_app.command("revoke")
def revoke_cmd(name_or_key_id: str = typer.Argument(..., help="A user name or a key id.")) -> None:
    """Revoke a key (by id) or every key of a user (by name): they answer 401 from now on."""
    sessions = _sessions()
    with session_scope(sessions) as session:
        done = revoke(session=session, name_or_key_id=name_or_key_id)
        ids = ", ".join(f"{r.key_id} ({r.user})" for r in done)
    audit.record(sessions, _actor(), f"users.revoke {name_or_key_id}", None, "ok")
    typer.echo(f"revoked {ids}")
