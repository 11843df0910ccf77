"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, table: Any) -> Any:
    """An INSERT with `.on_conflict_do_nothing()` / `.on_conflict_do_update()` for the session's database."""
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


def insert_ignore(session: Session, table: Any, values: dict[str, Any], index_elements: list[str]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns the number of rows inserted (0 or 1)."""
    stmt = insert_for(session, table).values(**values).on_conflict_do_nothing(index_elements=index_elements)
    return session.execute(stmt).rowcount


def conditional_update(model: Any) -> Any:
    """`UPDATE model ...` as a plain SQL statement (no ORM session synchronisation): every state change
    here is a conditional UPDATE whose rowcount (or RETURNING) says whether it won."""
    from sqlalchemy import update

    return update(model).execution_options(synchronize_session=False)
