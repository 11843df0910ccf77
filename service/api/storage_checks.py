"""Storage bookkeeping shared by the upload and delete routes."""

from __future__ import annotations

import logging

from service.core.apikeys import Principal
from service.core.blobs import purge_deleted
from service.core.quotas import check_storage
from service.core.services import Core

log = logging.getLogger(__name__)


def refuse_when_full(core: Core, principal: Principal) -> None:
    """429 before an upload's body is read, when the tenant's storage is already full."""
    with core.db.read() as s:
        check_storage(s, principal.tenant, principal.quotas)


def purge_quietly(core: Core) -> None:
    """Remove deleted resources' objects now; if the store is down, the sweep does it later."""
    try:
        purge_deleted(core.db, core.store)
    except Exception as e:
        log.warning("deleted objects not removed yet (%s); the sweep retries", e)
