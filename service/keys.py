"""The object-key layout, in one place. Every tenant's objects live under `tenants/{tenant}/`
so per-API-key tenancy (issue 6) is a drop-in: only the tenant dependency changes.

Records (small JSON, listed often) sit apart from artifacts so listing them stays cheap.
"""

from __future__ import annotations


def tenant_root(tenant: str) -> str:
    return f"tenants/{tenant}/"


# --- datasets
def dataset_records_prefix(tenant: str) -> str:
    return f"tenants/{tenant}/records/datasets/"


def dataset_record(tenant: str, dataset_id: str) -> str:
    return f"{dataset_records_prefix(tenant)}{dataset_id}.json"


def dataset_prefix(tenant: str, dataset_id: str) -> str:
    return f"tenants/{tenant}/datasets/{dataset_id}/"


def dataset_prepared(tenant: str, dataset_id: str) -> str:
    return f"{dataset_prefix(tenant, dataset_id)}prepared.zip"


def dataset_original(tenant: str, dataset_id: str) -> str:
    return f"{dataset_prefix(tenant, dataset_id)}original.zip"


# --- jobs
def job_records_prefix(tenant: str) -> str:
    return f"tenants/{tenant}/records/jobs/"


def job_record(tenant: str, job_id: str) -> str:
    return f"{job_records_prefix(tenant)}{job_id}.json"


def job_prefix(tenant: str, job_id: str) -> str:
    return f"tenants/{tenant}/jobs/{job_id}/"


def job_series(tenant: str, job_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}series.json"


def job_cancel_marker(tenant: str, job_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}cancel-requested"


def job_checkpoints_prefix(tenant: str, job_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}checkpoints/"


def job_checkpoint(tenant: str, job_id: str, name: str) -> str:
    return f"{job_checkpoints_prefix(tenant, job_id)}{name}"


def job_grid(tenant: str, job_id: str, name: str) -> str:
    return f"{job_prefix(tenant, job_id)}grids/{name}"


def job_sample_prefix(tenant: str, job_id: str, sample_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}samples/{sample_id}/"


# --- pretrained models (uploaded .pt checkpoints and NVlabs pkls, stored converted to our checkpoint format)
def model_records_prefix(tenant: str) -> str:
    return f"tenants/{tenant}/records/models/"


def model_record(tenant: str, model_id: str) -> str:
    return f"{model_records_prefix(tenant)}{model_id}.json"


def model_prefix(tenant: str, model_id: str) -> str:
    return f"tenants/{tenant}/models/{model_id}/"


def model_weights(tenant: str, model_id: str) -> str:
    return f"{model_prefix(tenant, model_id)}model.pt"


def idempotency(tenant: str, key_hash: str) -> str:
    return f"tenants/{tenant}/idempotency/{key_hash}.json"


# --- cross-tenant index of unfinished jobs, so the stale sweep never lists every tenant's objects
ACTIVE_PREFIX = "system/active-jobs/"


def active_job(tenant: str, job_id: str) -> str:
    return f"{ACTIVE_PREFIX}{tenant}/{job_id}"
