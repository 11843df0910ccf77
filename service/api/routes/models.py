"""Pretrained models: upload (an NVlabs .pkl or a .pt of ours), list, get, delete."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from service import keys
from service.auth import check_storage
from service.deps import JobsDep, PrincipalDep, SettingsDep, StoreDep, TenantDep
from service.ids import is_valid_id
from service.models.ingest import ingest_model, receive_model
from service.models.records import ModelRecord, ModelRepo
from service.schemas.common import ERROR_RESPONSES
from service.schemas.models import Model, ModelList

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


def models_repo(request: Request) -> ModelRepo:
    return request.app.state.models


def _view(rec: ModelRecord) -> Model:
    return Model.model_validate(rec.model_dump())


def load_model(repo: ModelRepo, tenant: str, model_id: str) -> ModelRecord:
    rec = repo.find(tenant, model_id) if is_valid_id(model_id, "model") else None
    if rec is None:
        raise HTTPException(404, f"no model {model_id!r}; list yours with GET /v1/models")
    return rec


@router.post("", status_code=201, response_model=Model, openapi_extra=_UPLOAD_BODY,
             summary="Upload a pretrained StyleGAN2: an NVlabs .pkl (read without running its code) or a .pt "
                     "checkpoint; multipart field `file`, or the raw body (?name=...)")
async def create_model(request: Request, settings: SettingsDep, store: StoreDep, tenant: TenantDep,
                       principal: PrincipalDep) -> Model:
    if principal.quotas is not None:  # already full: refuse before reading the body
        await run_in_threadpool(check_storage, store, principal)
    repo = models_repo(request)

    def fits(nbytes: int) -> None:
        check_storage(store, principal, nbytes)

    with tempfile.TemporaryDirectory(prefix="diggan-model-upload-") as tmp:
        dest = Path(tmp) / "upload.bin"
        name, filename = await receive_model(request, settings, dest)
        # Unpickling and converting is CPU work: off the event loop.
        rec = await run_in_threadpool(ingest_model, dest, name, filename, tenant, settings, store, repo, fits)
    return _view(rec)


@router.get("", response_model=ModelList, summary="Your models, newest first")
def list_models(request: Request, tenant: TenantDep) -> ModelList:
    return ModelList(data=[_view(r) for r in models_repo(request).list(tenant)])


@router.get("/{model_id}", response_model=Model)
def get_model(model_id: str, request: Request, tenant: TenantDep) -> Model:
    return _view(load_model(models_repo(request), tenant, model_id))


@router.delete("/{model_id}", status_code=204, response_class=Response,
               summary="Delete a model (409 while an unfinished job starts from it)")
def delete_model(model_id: str, request: Request, jobs: JobsDep, tenant: TenantDep) -> Response:
    repo = models_repo(request)
    load_model(repo, tenant, model_id)
    users = [j for j in _active_job_ids(jobs, tenant) if _starts_from(jobs, tenant, j, model_id)]
    if users:
        raise HTTPException(409, f"model {model_id} is used by unfinished job(s) {', '.join(users)}; "
                                 "cancel them or wait until they finish")
    repo.delete(tenant, model_id)
    return Response(status_code=204)


def _active_job_ids(jobs, tenant: str) -> list[str]:
    prefix = f"{keys.ACTIVE_PREFIX}{tenant}/"
    return [info.key[len(prefix):] for info in jobs.store.list(prefix)]


def _starts_from(jobs, tenant: str, job_id: str, model_id: str) -> bool:
    rec = jobs.find(tenant, job_id)
    init = getattr(rec, "init_from", None) or {}
    return init.get("model") == model_id
