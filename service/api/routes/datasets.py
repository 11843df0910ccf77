"""Datasets: upload (multipart zip or images), list, get, delete."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.datasets.ingest import ingest, receive_upload
from service.datasets.records import DatasetRecord
from service.auth import check_storage
from service.deps import DatasetsDep, JobsDep, PrincipalDep, SettingsDep, StoreDep, TenantDep
from service.ids import is_valid_id
from service.schemas.common import ERROR_RESPONSES
from service.schemas.datasets import Dataset, DatasetList

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


def load_dataset(repo, tenant: str, dataset_id: str) -> DatasetRecord:
    rec = repo.find(tenant, dataset_id) if is_valid_id(dataset_id, "ds") else None
    if rec is None:
        raise HTTPException(404, f"no dataset {dataset_id!r}; list yours with GET /v1/datasets")
    return rec


@router.post("", status_code=201, response_model=Dataset, openapi_extra=_UPLOAD_BODY,
             summary="Upload a dataset: field `file` (a zip) or repeated `files` (images)")
async def create_dataset(request: Request, settings: SettingsDep, store: StoreDep, repo: DatasetsDep,
                         tenant: TenantDep, principal: PrincipalDep) -> Dataset:
    if principal.quotas is not None:  # already full: refuse before reading the body
        await run_in_threadpool(check_storage, store, principal)
    upload = await receive_upload(request, settings)

    def fits(nbytes: int) -> None:
        check_storage(store, principal, nbytes)

    try:
        # Decoding images is CPU work: off the event loop.
        rec = await run_in_threadpool(ingest, upload, tenant, settings, store, repo, fits)
    finally:
        await upload.close()
    return _view(rec)


@router.get("", response_model=DatasetList, summary="Your datasets, newest first")
def list_datasets(repo: DatasetsDep, tenant: TenantDep) -> DatasetList:
    return DatasetList(data=[_view(r) for r in repo.list(tenant)])


@router.get("/{dataset_id}", response_model=Dataset)
def get_dataset(dataset_id: str, repo: DatasetsDep, tenant: TenantDep) -> Dataset:
    return _view(load_dataset(repo, tenant, dataset_id))


@router.delete("/{dataset_id}", status_code=204, response_class=Response,
               summary="Delete a dataset (409 while an unfinished job uses it)")
def delete_dataset(dataset_id: str, repo: DatasetsDep, jobs: JobsDep, tenant: TenantDep) -> Response:
    load_dataset(repo, tenant, dataset_id)
    users = jobs.active_for_dataset(tenant, dataset_id)
    if users:
        raise HTTPException(409, f"dataset {dataset_id} is used by unfinished job(s) {', '.join(users)}; "
                                 "cancel them or wait until they finish")
    repo.delete(tenant, dataset_id)
    return Response(status_code=204)
