"""The relational system of record (SQLAlchemy 2, Alembic): PostgreSQL deployed, SQLite embedded."""

from service.core.db.engine import Database
from service.core.db.migrate import upgrade

__all__ = ["Database", "upgrade"]
