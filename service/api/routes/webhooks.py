"""Webhooks: the tenant's default endpoint and signing secret, and a job's delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from service.api.deps import CoreDep, JobsDep, SettingsDep, TenantDep
from service.api.lookups import load_job
from service.api.schemas.common import ERROR_RESPONSES
from service.core import webhooks
from service.core.db.models import TenantWebhook
from service.core.db.sql import conditional_update

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)

EventName = Annotated[str, Field(pattern=r"^job\.(status|checkpoint|metrics)$")]


class WebhookConfig(BaseModel):
    url: str | None = Field(default=None, max_length=2000,
                            description="where job events go when a job names no webhook of its own; null: nowhere")
    events: list[EventName] = Field(default_factory=lambda: list(webhooks.EVENTS), max_length=3)


class TenantWebhookView(WebhookConfig):
    secret: str = Field(description="verify deliveries with it (Standard Webhooks: HMAC-SHA256 over "
                                    "'webhook-id.webhook-timestamp.body'); the same for every job of the tenant")


class Delivery(BaseModel):
    id: str = Field(description="the webhook-id header of the delivery")
    event: str
    url: str
    status: str = Field(description="pending (being retried), delivered, or failed (given up)")
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    payload: dict


class DeliveryList(BaseModel):
    data: list[Delivery]


def _view(row: TenantWebhook) -> TenantWebhookView:
    return TenantWebhookView(url=row.url, events=list(row.events or webhooks.EVENTS), secret=row.secret)


@router.get("/v1/webhooks", response_model=TenantWebhookView, summary="Your default webhook and signing secret")
def get_webhook(core: CoreDep, tenant: TenantDep) -> TenantWebhookView:
    with core.db.write() as s:
        return _view(webhooks.tenant_webhook(s, tenant))


@router.put("/v1/webhooks", response_model=TenantWebhookView,
            summary="Set (or clear, with url null) your default webhook; jobs may name their own")
def put_webhook(body: WebhookConfig, core: CoreDep, settings: SettingsDep, tenant: TenantDep) -> TenantWebhookView:
    if body.url:
        try:
            webhooks.check_url(body.url, settings.webhooks_allow_private)
        except webhooks.WebhookUrlError as e:
            raise HTTPException(422, str(e)) from None
    with core.db.write() as s:
        webhooks.tenant_webhook(s, tenant)
        s.execute(conditional_update(TenantWebhook).where(TenantWebhook.tenant == tenant)
                  .values(url=body.url, events=sorted(set(body.events))))
        return _view(s.get_one(TenantWebhook, tenant, populate_existing=True))


@router.post("/v1/webhooks/rotate-secret", response_model=TenantWebhookView,
             summary="A new signing secret; deliveries from now on are signed with it")
def rotate_secret(core: CoreDep, tenant: TenantDep) -> TenantWebhookView:
    with core.db.write() as s:
        webhooks.tenant_webhook(s, tenant)
        s.execute(conditional_update(TenantWebhook).where(TenantWebhook.tenant == tenant)
                  .values(secret=webhooks.new_secret()))
        return _view(s.get_one(TenantWebhook, tenant, populate_existing=True))


@router.get("/v1/jobs/{job_id}/webhook-deliveries", response_model=DeliveryList,
            summary="Every webhook delivery of a job, in order, with its outcome")
async def job_deliveries(job_id: str, jobs: JobsDep, core: CoreDep, tenant: TenantDep) -> DeliveryList:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    rows = await run_in_threadpool(webhooks.deliveries, core.db, rec.id)
    return DeliveryList(data=[Delivery(id=d.msg_id, event=d.event, url=d.url, status=d.status, attempts=d.attempts,
                                       last_status=d.last_status, last_error=d.last_error, created_at=d.created_at,
                                       delivered_at=d.delivered_at, payload=d.payload) for d in rows])
