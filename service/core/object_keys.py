"""The object-key layout, in one place. The object store holds only blobs; every record is a row in
the database, which also stores each blob's key, so a reader never derives a key from a name.

Every tenant's objects live under `tenants/{tenant}/`. A worker writes under its own attempt
(`.../attempts/{attempt}/...`): a worker that lost its lease can never overwrite the bytes of a
checkpoint the live worker registered.
"""

from __future__ import annotations


def tenant_root(tenant: str) -> str:
    return f"tenants/{tenant}/"


# --- datasets
def dataset_prefix(tenant: str, dataset_id: str) -> str:
    return f"tenants/{tenant}/datasets/{dataset_id}/"


def dataset_prepared(tenant: str, dataset_id: str) -> str:
    return f"{dataset_prefix(tenant, dataset_id)}prepared.zip"


def dataset_original(tenant: str, dataset_id: str) -> str:
    return f"{dataset_prefix(tenant, dataset_id)}original.zip"


def dataset_features_prefix(tenant: str, dataset_id: str) -> str:
    """Inception features of a dataset, computed once and shared by every job on it."""
    return f"{dataset_prefix(tenant, dataset_id)}features/"


# --- jobs
def job_prefix(tenant: str, job_id: str) -> str:
    return f"tenants/{tenant}/jobs/{job_id}/"


def attempt_prefix(tenant: str, job_id: str, attempt: int) -> str:
    return f"{job_prefix(tenant, job_id)}attempts/{attempt}/"


def job_checkpoint(tenant: str, job_id: str, attempt: int, name: str) -> str:
    return f"{attempt_prefix(tenant, job_id, attempt)}checkpoints/{name}"


def job_grid(tenant: str, job_id: str, attempt: int, name: str) -> str:
    return f"{attempt_prefix(tenant, job_id, attempt)}grids/{name}"


def job_sample_prefix(tenant: str, job_id: str, sample_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}samples/{sample_id}/"


def job_reports_prefix(tenant: str, job_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}reports/"


# --- pretrained models (uploaded .pt checkpoints and NVlabs pkls, stored converted to our checkpoint format)
def model_prefix(tenant: str, model_id: str) -> str:
    return f"tenants/{tenant}/models/{model_id}/"


def model_weights(tenant: str, model_id: str) -> str:
    return f"{model_prefix(tenant, model_id)}model.pt"


# --- projections and latents (under the job whose generator they belong to: deleted with it)
def projection_prefix(tenant: str, job_id: str, projection_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}projections/{projection_id}/"


def projection_target(tenant: str, job_id: str, projection_id: str, index: int) -> str:
    return f"{projection_prefix(tenant, job_id, projection_id)}targets/{index:02d}.png"


def projection_result(tenant: str, job_id: str, projection_id: str, attempt: int, index: int, name: str) -> str:
    """Under the attempt that made it: a worker that lost its lease cannot overwrite the live one's files."""
    return f"{projection_prefix(tenant, job_id, projection_id)}attempts/{attempt}/{index:02d}-{name}"


def latent_prefix(tenant: str, job_id: str, latent_id: str) -> str:
    return f"{job_prefix(tenant, job_id)}latents/{latent_id}/"


def latent_npy(tenant: str, job_id: str, latent_id: str) -> str:
    return f"{latent_prefix(tenant, job_id, latent_id)}w.npy"
