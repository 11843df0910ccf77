"""Datasets: upload (multipart zip or images), list, get, delete."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.api.dataset_ingest import ingest, receive_upload
from service.api.deps import CoreDep, DatasetsDep, PrincipalDep, SettingsDep, StoreDep, TenantDep, in_upload_pool
from service.api.lookups import load_dataset
from service.api.pagination import PageCursor, PageLimit, check_cursor, page_fields
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.datasets import Dataset, DatasetList
from service.api.storage_checks import purge_quietly, refuse_when_full
from service.core.uploads import DatasetRecord, InUse

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "a .zip of images (folders inside allowed)"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                  "description": "images, as repeated fields (instead of `file`)"},
                        "name": {"type": "string", "maxLength": 200},
                        "resolution": {"type": "integer", "description": "power of two in [32, 1024]; default from the images"},
                        "class_folders": {"type": "boolean", "default": False,
                                          "description": "one top-level folder per class in the zip -> class labels "
                                                         "(class k = k-th folder name in sorted order), for "
                                                         "class-conditional jobs (preset biggan-32)"},
                    },
                }
            }
        },
    }
}


def _view(rec: DatasetRecord) -> Dataset:
    return Dataset.model_validate(rec.model_dump())


@router.post("", status_code=201, response_model=Dataset, openapi_extra=_UPLOAD_BODY,
             summary="Upload a dataset: field `file` (a zip) or repeated `files` (images)")
async def create_dataset(request: Request, settings: SettingsDep, store: StoreDep, repo: DatasetsDep,
                         core: CoreDep, tenant: TenantDep, principal: PrincipalDep) -> Dataset:
    if principal.quotas is not None:  # already full: refuse before reading the body
        await run_in_threadpool(refuse_when_full, core, principal)
    upload = await receive_upload(request, settings)
    def decode_budget(pixels: int):  # pixels being decoded for this tenant at once, across replicas
        return core.slots.hold(tenant, "decode", settings.max_decode_pixels_per_tenant, ttl_s=7200, weight=pixels)

    try:
        # Decoding images is CPU work: off the event loop, in the bounded upload pool.
        rec = await in_upload_pool(request, ingest, upload, tenant, settings, store, repo, principal.quotas,
                                   decode_budget)
    finally:
        await upload.close()
    return _view(rec)


@router.get("", response_model=DatasetList, summary="Your datasets, newest first, with cursor pagination")
def list_datasets(
    repo: DatasetsDep, tenant: TenantDep,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> DatasetList:
    check_cursor(cursor, "ds")
    page, next_cursor = repo.list(tenant, limit=limit, cursor=cursor)
    return DatasetList(data=[_view(r) for r in page], **page_fields(next_cursor))


@router.get("/{dataset_id}", response_model=Dataset)
def get_dataset(dataset_id: str, repo: DatasetsDep, tenant: TenantDep) -> Dataset:
    return _view(load_dataset(repo, tenant, dataset_id))


@router.delete("/{dataset_id}", status_code=204, response_class=Response,
               summary="Delete a dataset and its files (409 while an unfinished job uses it); its storage is "
                       "credited at once")
def delete_dataset(dataset_id: str, repo: DatasetsDep, core: CoreDep, tenant: TenantDep) -> Response:
    load_dataset(repo, tenant, dataset_id)
    try:
        repo.delete(tenant, dataset_id)
    except InUse as e:
        raise HTTPException(409, f"dataset {dataset_id} is used by unfinished job(s) {', '.join(e.job_ids)}; "
                                 "cancel them or wait until they finish") from None
    purge_quietly(core)
    return Response(status_code=204)

