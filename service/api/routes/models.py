"""Pretrained models: upload (an NVlabs .pkl or a .pt of ours), list, get, delete."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import CoreDep, ModelsDep, PrincipalDep, SettingsDep, StoreDep, TenantDep, in_upload_pool
from service.api.lookups import load_model
from service.api.model_ingest import ingest_model, receive_model
from service.api.pagination import PageCursor, PageLimit, check_cursor, page_fields
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.models import Model, ModelList
from service.api.storage_checks import purge_quietly, refuse_when_full
from service.core.uploads import InUse, ModelRecord

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "an NVlabs stylegan2-ada-pytorch .pkl or a .pt checkpoint of a job"},
                        "name": {"type": "string", "maxLength": 200},
                    },
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _view(rec: ModelRecord) -> Model:
    return Model.model_validate(rec.model_dump())


@router.post("", status_code=201, response_model=Model, openapi_extra=_UPLOAD_BODY,
             summary="Upload a pretrained StyleGAN2: an NVlabs .pkl (read without running its code) or a .pt "
                     "checkpoint; multipart field `file`, or the raw body (?name=...)")
async def create_model(request: Request, settings: SettingsDep, store: StoreDep, repo: ModelsDep, core: CoreDep,
                       tenant: TenantDep, principal: PrincipalDep) -> Model:
    if principal.quotas is not None:  # already full: refuse before reading the body
        await run_in_threadpool(refuse_when_full, core, principal)
    with tempfile.TemporaryDirectory(prefix="diggan-model-upload-") as tmp:
        dest = Path(tmp) / "upload.bin"
        name, filename = await receive_model(request, settings, dest)
        # Parsing and converting happens in a child process; waiting for it is done in the upload pool.
        rec = await in_upload_pool(request, ingest_model, dest, name, filename, tenant, settings, store, repo,
                                   principal.quotas)
    return _view(rec)


@router.get("", response_model=ModelList, summary="Your models, newest first, with cursor pagination")
def list_models(
    repo: ModelsDep, tenant: TenantDep,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> ModelList:
    check_cursor(cursor, "model")
    page, next_cursor = repo.list(tenant, limit=limit, cursor=cursor)
    return ModelList(data=[_view(r) for r in page], **page_fields(next_cursor))


@router.get("/{model_id}", response_model=Model)
def get_model(model_id: str, repo: ModelsDep, tenant: TenantDep) -> Model:
    return _view(load_model(repo, tenant, model_id))


@router.delete("/{model_id}", status_code=204, response_class=Response,
               summary="Delete a model (409 while an unfinished job starts from it); its storage is credited at once")
def delete_model(model_id: str, repo: ModelsDep, core: CoreDep, tenant: TenantDep) -> Response:
    load_model(repo, tenant, model_id)
    try:
        repo.delete(tenant, model_id)
    except InUse as e:
        raise HTTPException(409, f"model {model_id} is used by unfinished job(s) {', '.join(e.job_ids)}; "
                                 "cancel them or wait until they finish") from None
    purge_quietly(core)
    return Response(status_code=204)
