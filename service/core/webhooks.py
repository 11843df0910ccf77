"""Webhooks: tell a client when a job changes, instead of making it poll.

A job names `{"url", "events"}` (or the tenant's default applies). Every change it wants to hear about
is written as a row of `webhook_deliveries` in the same transaction as the change (an outbox: a crash
cannot lose an event, and an event is never sent for a change that rolled back). A dispatcher (a thread
of every API process) delivers them in order per job, signed as Standard Webhooks does (webhook-id,
webhook-timestamp, webhook-signature: HMAC-SHA256 over "id.timestamp.body" with the tenant's `whsec_`
secret), retries a failure with backoff for `webhook_retry_for_s`, and records each outcome.

Outgoing requests go only to public addresses (unless `webhooks_allow_private`): the host is resolved
and every address checked at registration and again at each delivery, and redirects are not followed.

Events: `job.status` (every state change), `job.checkpoint` (a checkpoint stored), `job.metrics`
(a checkpoint with snapshot metrics, e.g. KID).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from service.core.db.engine import Database
from service.core.db.models import Job, TenantWebhook, WebhookDelivery
from service.core.db.sql import conditional_update, insert_ignore, rows_affected
from service.core.db.types import db_now, seconds_after_now, seconds_before_now
from service.core.ids import new_id
from service.core.settings import Settings

log = logging.getLogger(__name__)

EVENTS = ("job.status", "job.checkpoint", "job.metrics")
LEASE_S = 60.0  # a dispatcher that dies mid-delivery frees the row after this
MAX_BACKOFF_S = 3600.0


class WebhookUrlError(ValueError):
    """A URL we will not send to (422)."""


def check_url(url: str, allow_private: bool) -> None:
    """Refuse what is not http(s), and hosts that resolve to private, loopback, link-local, multicast or
    reserved addresses (server-side request forgery), unless allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlError(f"webhook URL {url[:200]!r} must be http(s)://host/...")
    if parts.username or parts.password:
        raise WebhookUrlError("webhook URLs may not carry credentials; verify deliveries by their signature")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise WebhookUrlError(f"webhook host {parts.hostname!r} does not resolve ({e.strerror})") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or (ip.version == 6 and ip.ipv4_mapped and not ip.ipv4_mapped.is_global)):
            raise WebhookUrlError(f"webhook host {parts.hostname!r} resolves to {ip}, a private or local address; "
                                  "webhooks go to public addresses only")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def tenant_webhook(s: Session, tenant: str) -> TenantWebhook:
    """The tenant's row (made, with a fresh signing secret, on first use)."""
    insert_ignore(s, TenantWebhook, {"tenant": tenant, "url": None, "events": list(EVENTS), "secret": new_secret()},
                  ["tenant"])
    return s.execute(select(TenantWebhook).where(TenantWebhook.tenant == tenant)).scalar_one()


def _target(s: Session, job: Job) -> tuple[str | None, list[str]] | None:
    if job.webhook:
        return job.webhook.get("url"), list(job.webhook.get("events") or EVENTS)
    row = s.get(TenantWebhook, job.tenant)
    if row is not None and row.url:
        return row.url, list(row.events or EVENTS)
    return None


def job_status_data(job: Job) -> dict[str, Any]:
    return {"id": job.id, "object": "job", "status": job.status, "name": job.name, "metadata": job.meta or {},
            "attempt": job.attempt, "error": job.error, "kimg": job.kimg, "total_kimg": job.total_kimg,
            "latest_checkpoint": job.latest_checkpoint}


def emit(s: Session, job_id: str, event: str, data: dict[str, Any] | None = None) -> None:
    """Queue `event` for the job's webhook, in the caller's transaction (nothing when none wants it)."""
    job = s.get(Job, job_id, populate_existing=True)
    if job is None:
        return
    target = _target(s, job)
    if target is None or event not in target[1] or not target[0]:
        return
    payload = {"type": event, "timestamp": datetime.now(timezone.utc).isoformat(),
               "data": data if data is not None else job_status_data(job)}
    s.add(WebhookDelivery(msg_id=new_id("msg"), tenant=job.tenant, job_id=job.id, url=target[0], event=event,
                          payload=payload, status="pending", attempts=0))


def emit_status(s: Session, job_id: str) -> None:
    emit(s, job_id, "job.status")


# --------------------------------------------------------------------------- delivery


def backoff_s(attempts: int, base_s: float) -> float:
    return min(base_s * 2 ** max(0, attempts - 1), MAX_BACKOFF_S)


def _claim_due(db: Database, limit: int) -> list[WebhookDelivery]:
    """Due rows whose job has no earlier undelivered one (in order per job), leased to this dispatcher."""
    earlier = aliased(WebhookDelivery)
    blocked = select(earlier.id).where(earlier.job_id == WebhookDelivery.job_id, earlier.id < WebhookDelivery.id,
                                       earlier.status == "pending").exists()
    free = (WebhookDelivery.lease_until.is_(None)) | (WebhookDelivery.lease_until < db_now())
    with db.read() as s:
        ids = list(s.scalars(select(WebhookDelivery.id).where(
            WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= db_now(), free, ~blocked)
            .order_by(WebhookDelivery.id).limit(limit)))
    claimed = []
    for ident in ids:
        with db.write() as s:
            won = rows_affected(s, conditional_update(WebhookDelivery)
                                .where(WebhookDelivery.id == ident, WebhookDelivery.status == "pending", free)
                                .values(lease_until=seconds_after_now(LEASE_S)))
            if won:
                claimed.append(s.get_one(WebhookDelivery, ident))  # ours: we just leased it
    return claimed


def _signed_request(delivery: WebhookDelivery, secret: str) -> tuple[bytes, dict[str, str]]:
    from standardwebhooks.webhooks import Webhook

    body = json.dumps(delivery.payload, separators=(",", ":"), default=str)
    now = datetime.now(timezone.utc)
    signature = Webhook(secret).sign(delivery.msg_id, now, body)
    return body.encode(), {"content-type": "application/json", "webhook-id": delivery.msg_id,
                           "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
                           "user-agent": "diggan-service-webhooks"}


def deliver_due(db: Database, settings: Settings, client: httpx.Client, limit: int = 20) -> int:
    """One pass: send what is due; returns how many were attempted."""
    attempted = 0
    for d in _claim_due(db, limit):
        attempted += 1
        status, error = None, None
        try:
            check_url(d.url, settings.webhooks_allow_private)  # again: the name may resolve elsewhere now
            with db.write() as s:
                secret = tenant_webhook(s, d.tenant).secret
            body, headers = _signed_request(d, secret)
            r = client.post(d.url, content=body, headers=headers)  # redirects are not followed
            status = r.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        except WebhookUrlError as e:
            error = str(e)
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:300]
        _record(db, settings, d, status, error)
    return attempted


def _record(db: Database, settings: Settings, d: WebhookDelivery, status: int | None, error: str | None) -> None:
    attempts = d.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error, "lease_until": None}
    if error is None:
        values.update(status="delivered", delivered_at=db_now())
    with db.write() as s:
        if error is not None:
            expired = s.scalar(select(WebhookDelivery.created_at < seconds_before_now(settings.webhook_retry_for_s))
                               .where(WebhookDelivery.id == d.id))
            if expired:
                values["status"] = "failed"
            else:
                values["next_attempt_at"] = seconds_after_now(backoff_s(attempts, settings.webhook_retry_base_s))
        s.execute(conditional_update(WebhookDelivery).where(WebhookDelivery.id == d.id).values(**values))
    if error is not None:
        log.warning("webhook %s (%s of job %s) attempt %d failed: %s", d.msg_id, d.event, d.job_id, attempts, error)


def deliveries(db: Database, job_id: str, limit: int = 100) -> list[WebhookDelivery]:
    with db.read() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                              .order_by(WebhookDelivery.id).limit(limit)))

