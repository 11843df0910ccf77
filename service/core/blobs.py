"""Which stored objects a tenant pays for, and removing them.

Objects are written first, then registered here in the transaction that publishes what owns them;
deleting a resource deletes its rows and queues its store prefix in `object_deletions` in one
transaction, and the sweep removes the objects (a crash in between leaks nothing)."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.core.db.engine import Database
from service.core.db.models import Blob, ObjectDeletion
from service.core.db.sql import insert_for, insert_ignore
from service.core.storage import ObjectStore, StorageError

log = logging.getLogger(__name__)


def register(s: Session, tenant: str, key: str, size: int, owner_type: str, owner_id: str) -> None:
    stmt = insert_for(s, Blob).values(key=key, tenant=tenant, size=int(size), owner_type=owner_type,
                                      owner_id=owner_id)
    s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"size": int(size)}))


def release_prefix(s: Session, tenant: str, prefix: str) -> None:
    """Forget the blobs under `prefix` and queue the prefix for removal from the store."""
    s.execute(delete(Blob).where(Blob.tenant == tenant, Blob.key.startswith(prefix, autoescape=True)))
    insert_ignore(s, ObjectDeletion, {"prefix": prefix}, ["prefix"])


def purge_deleted(db: Database, store: ObjectStore, limit: int = 100) -> int:
    """Remove queued prefixes from the store; returns how many were done."""
    with db.read() as s:
        prefixes = list(s.scalars(select(ObjectDeletion.prefix).order_by(ObjectDeletion.created_at).limit(limit)))
    done = 0
    for prefix in prefixes:
        try:
            store.delete_prefix(prefix)
        except StorageError as e:  # the store is down: the next sweep retries
            log.warning("could not remove %s from the store yet: %s", prefix, e)
            continue
        with db.write() as s:
            s.execute(delete(ObjectDeletion).where(ObjectDeletion.prefix == prefix))
        done += 1
    return done
