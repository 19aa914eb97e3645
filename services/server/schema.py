"""Creating and upgrading the job store's tables, on SQLite and PostgreSQL alike.

`create_all` makes missing tables but never touches a table that exists, so a store made by
an older service would lack the columns added since (the jobs' `owner`). `upgrade` adds
each missing column with `ALTER TABLE ... ADD COLUMN`, which both databases do in place:
no job is copied, rewritten or lost. Only nullable columns are ever added (a rule for new
columns), so rows written before read back as NULL: a job without an owner, which only an
admin sees."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, inspect
from sqlalchemy.schema import CreateIndex

from services.server import account_models  # noqa: F401 - registers the account tables
from services.server.job_models import Base

log = logging.getLogger(__name__)


def upgrade(engine: Engine) -> list[str]:
    """Create missing tables, add missing columns and their indexes; return what was added."""
    Base.metadata.create_all(engine)
    added: list[str] = []
    existing = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                if not column.nullable:
                    raise RuntimeError(f"cannot add NOT NULL column {table.name}.{column.name}")
                kind = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(
                    f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'
                )
                added.append(f"{table.name}.{column.name}")
                for index in table.indexes:
                    if column.name in index.columns:
                        conn.execute(CreateIndex(index, if_not_exists=True))
    if added:
        log.info("job store upgraded: added %s", ", ".join(added))
    return added
