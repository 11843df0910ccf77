"""Column types and SQL helpers that behave the same on PostgreSQL and SQLite.

- `UTCDateTime`: timezone-aware UTC datetimes in Python; TIMESTAMPTZ on PostgreSQL, and on SQLite
  SQLAlchemy's fixed-width text ("YYYY-MM-DD HH:MM:SS.ffffff", naive UTC), so text order is time order.
- `db_now()`: the DATABASE's clock. Heartbeats, staleness and expiries are all compared on one clock,
  whatever the clocks of the API and worker machines say.
- `JSONType`: JSONB on PostgreSQL, JSON text on SQLite.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; use datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class db_now(FunctionElement):  # noqa: N801 - reads like the SQL function it renders
    """The database server's current time (UTC), as a UTCDateTime expression."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _now_pg(element: db_now, compiler: Any, **kw: Any) -> str:
    return "statement_timestamp()"  # not now(): that is frozen at the start of a long transaction


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    # Same text layout as SQLAlchemy's SQLite DateTime (microseconds, 6 digits), so comparisons with
    # stored values are correct as text.
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


class db_now_plus(FunctionElement):  # noqa: N801
    """db_now() plus a number of seconds (a bound parameter; negative for the past)."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now_plus, "postgresql")
def _plus_pg(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    (seconds,) = list(element.clauses)
    return f"(statement_timestamp() + make_interval(secs => {compiler.process(seconds, **kw)}))"


@compiles(db_now_plus, "sqlite")
def _plus_sqlite(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    (seconds,) = list(element.clauses)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', ({compiler.process(seconds, **kw)}) || ' seconds') || '000')"


def seconds_before_now(seconds: float) -> db_now_plus:
    return db_now_plus(-float(seconds))


def seconds_after_now(seconds: float) -> db_now_plus:
    return db_now_plus(float(seconds))
