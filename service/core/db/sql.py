"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Executable, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, table: Any) -> Any:
    """An INSERT with `.on_conflict_do_nothing()` / `.on_conflict_do_update()` for the session's database."""
    name = session.get_bind().dialect.name
    # The Core table, not the ORM class: no ORM bulk-insert machinery for a one-row upsert.
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(getattr(table, "__table__", table))


def insert_ignore(session: Session, table: Any, values: dict[str, Any], index_elements: list[str]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns the number of rows inserted (0 or 1). (RETURNING, not
    rowcount: psycopg reports no rowcount for this statement.)"""
    stmt = insert_for(session, table).values(**values).on_conflict_do_nothing(index_elements=index_elements)
    return 0 if session.execute(stmt.returning(literal_column("1"))).first() is None else 1


def rows_affected(session: Session, stmt: Executable) -> int:
    """Run an UPDATE or DELETE and return its rowcount: how many rows its WHERE matched. (Session.execute is
    typed as returning a Result; for these statements it is a CursorResult, which carries the count.)"""
    return cast(CursorResult[Any], session.execute(stmt)).rowcount


def conditional_update(model: Any) -> Any:
    """`UPDATE model ...` as a plain SQL statement (no ORM session synchronisation): every state change
    here is a conditional UPDATE whose rowcount (or RETURNING) says whether it won."""
    from sqlalchemy import update

    return update(model).execution_options(synchronize_session=False)
