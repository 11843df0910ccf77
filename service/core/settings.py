"""Service settings from the environment (prefix DIGGAN_), via pydantic-settings.

Shared by the API and the worker. The defaults are the embedded mode: a SQLite
database, local-directory storage and a server-less Celery broker, all under
`data_dir`, so `make run` needs no PostgreSQL, no Redis and no MinIO. Deployment
selects PostgreSQL, Redis and MinIO purely through environment variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Passwords that ship in images, tutorials and older compose files: a deployment using one is open.
WELL_KNOWN_SECRETS = frozenset({"minioadmin", "minio123", "changeme", "change-me", "password", "secret", "postgres",
                                "diggan", "diggan-dev-secret", "admin", "root", "test"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGGAN_", env_file=None, extra="ignore")

    # --- where things live
    data_dir: Path = Path("data")  # embedded-mode root: diggan.db, store/, broker.sqlite, caches
    # The system of record (SQLAlchemy URL). Empty = the embedded SQLite file data_dir/diggan.db;
    # deployed: postgresql+psycopg://user:password@host:5432/dbname.
    database_url: str = ""
    db_pool_size: int = Field(default=5, ge=1, le=100)  # connections per process (PostgreSQL)
    db_auto_migrate: bool = True  # apply Alembic migrations at start-up (under a lock; safe with replicas)
    storage: Literal["local", "s3"] = "local"
    s3_endpoint: str = "localhost:9000"  # host:port, no scheme (minio SDK style)
    s3_access_key: str = ""
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "diggan"
    s3_secure: bool = False
    s3_region: str | None = None
    s3_public_endpoint: str | None = None  # host:port clients reach for presigned URLs (e.g. localhost:9000)
    # Each S3 operation retries with exponential backoff for at most this long / this many tries, then
    # fails with StorageUnavailable (a training job then fails with that reason, or the sweep resumes it).
    s3_retry_max_s: float = Field(default=20.0, gt=0, le=600)
    s3_retry_attempts: int = Field(default=5, ge=1, le=100)
    # A training worker rides out a storage outage this long (waiting, with backoff, at its next tick or
    # snapshot) before the job fails with a storage error; work done meanwhile is kept in memory.
    storage_outage_tolerance_s: float = Field(default=120.0, ge=0, le=3600)
    presign_expires_s: int = Field(default=900, ge=1, le=7 * 24 * 3600)  # lifetime of presigned download URLs

    # --- queueing. Empty broker/backend = embedded, server-less (SQLite files under data_dir).
    broker_url: str = ""
    result_backend: str = ""
    redis_url: str | None = None  # shared request-rate limits across API replicas (None: the database counts them)
    visibility_timeout_s: int = 12 * 3600  # Redis re-delivers unacked tasks after this; > longest tick
    broker_polling_interval_s: float = 0.25  # filesystem:// broker poll period (pickup latency)

    # --- metrics: GET /metrics needs this bearer token (without one, /metrics answers only while auth is off);
    # each worker serves its own on worker_metrics_port (0: off)
    metrics_token: SecretStr | None = None
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    # --- logs (service/core/logs.py): one format for the API, the workers and `python -m service`
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    # Every body but an upload's is read into memory at most this large (413 beyond; checked before parsing).
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Per tenant, across every replica (counted in the database): heavy requests (sampling, interpolation,
    # memorization, export) running at once, and open event streams; a stream with nothing new for
    # events_idle_timeout_s ends (clients reconnect with since_tick).
    max_heavy_requests_per_tenant: int = Field(default=2, ge=1, le=1000)
    max_event_streams_per_tenant: int = Field(default=16, ge=1, le=10_000)
    events_idle_timeout_s: float = Field(default=600.0, gt=0)

    # --- uploads (issue 6 tightens these; they are settings so ops can tune them)
    max_upload_bytes: int = 256 * 1024 * 1024
    max_upload_files: int = 2000
    min_dataset_images: int = 8
    max_dataset_images: int = 5000
    max_image_pixels: int = 40_000_000  # decompression-bomb guard per image
    # Pretrained model uploads (POST /v1/models): NVlabs' FFHQ 1024 pkl (G, D, G_ema, augment pipe) is ~364 MB.
    max_model_upload_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    # Each upload is parsed in a child process with these limits (gan_core.interop.sandbox measured 1.53 GB
    # for a paper1024 pkl); at most `upload_workers` conversions or dataset decodes run at once per process.
    model_convert_memory_bytes: int = Field(default=4 << 30, ge=256 << 20)
    model_convert_timeout_s: float = Field(default=180.0, gt=0)
    upload_workers: int = Field(default=2, ge=1, le=64)
    # Dataset decode budgets: declared pixels of one upload (checked from image headers before any decode;
    # 8 GP = 5,000 images of 1024x1024 with room to spare), and of one tenant's uploads decoding at once.
    max_upload_pixels: int = Field(default=8_000_000_000, ge=1)
    max_decode_pixels_per_tenant: int = Field(default=16_000_000_000, ge=1)
    # Projections (POST /v1/jobs/{id}/projections): photos per request, the whole multipart body (phone photos
    # are 3-12 MB each), and optimisation steps (5x NVlabs' 1000: room for W+ on a GPU).
    max_projection_images: int = Field(default=8, ge=1, le=64)
    max_projection_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_projection_steps: int = Field(default=5000, ge=1, le=100_000)

    # --- jobs
    default_preset: str = "cpu-tiny"
    max_kimg: float = 25_000.0
    max_attempts: int = 3  # a job whose worker died is re-queued at most this many times in total
    worker_heartbeat_s: float = 10.0
    stale_after_s: float = 120.0  # a running job with an older heartbeat (database clock) is presumed orphaned
    sweep_interval_s: float = 30.0  # the API's sweep period (stale leases, unsent jobs, orphans; 0 = off)
    # A queued job whose message may have been lost (broker restart, flushed queue) is sent again after
    # this long, then after twice that, and so on (capped at an hour): duplicates are harmless (the claim
    # is a conditional update), and the backoff keeps a job that waits behind others from piling up copies.
    resend_queued_after_s: float = Field(default=300.0, gt=0)
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    calibration_wait_s: float = Field(default=120.0, gt=0, le=1800)  # POST /v1/jobs/estimate waits this long  # an Idempotency-Key is remembered this long
    upload_orphan_after_s: float = Field(default=3600.0, gt=0)  # an upload still unfinished after this is removed
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Intra-op CPU threads per training process. 0 = cores - 1 (at least 1): leaves a core for the
    # API, and OpenMP threads spinning on an oversubscribed CPU slow training down 10-30x.
    torch_threads: int = Field(default=0, ge=0, le=256)
    # GPUs this worker owns (it runs a job asking `gpus: N` as N processes, one per GPU). 0 = every GPU it
    # sees (torch.cuda.device_count(); give each worker its own with CUDA_VISIBLE_DEVICES or compose's
    # device_ids). On a CPU-only worker: the gloo processes a job may use (1 unless set; for testing).
    worker_gpus: int = Field(default=0, ge=0, le=64)
    # The most GPUs one job may ask for (POST /v1/jobs `gpus`): at most what the largest worker owns.
    max_job_gpus: int = Field(default=1, ge=1, le=64)

    # --- webhooks (service/core/webhooks.py)
    webhooks_allow_private: bool = False  # also deliver to private/loopback addresses (tests, one-host setups)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_retry_base_s: float = Field(default=5.0, gt=0)  # then 2x per failed attempt, capped at an hour
    webhook_retry_for_s: float = Field(default=24 * 3600.0, gt=0)  # a delivery failing this long is given up
    webhook_poll_s: float = Field(default=1.0, gt=0)  # the dispatcher's period (0 turns it off: see sweep)

    # --- samples
    max_samples: int = 64
    psi_min: float = -2.0
    psi_max: float = 2.0
    sample_device: Literal["auto", "cpu", "cuda"] = "cpu"
    sample_threads: int = Field(default=1, ge=1, le=256)  # torch threads per API sampling call
    generator_cache_size: int = 4

    # --- auth. Keys live salted and hashed in the database (service/core/apikeys.py; `python -m service keys`).
    # Auth is enforced when auth_required is set or static api_keys are configured (a setting, never
    # inferred from what the database holds). Without auth the API answers only on loopback.
    auth_required: bool = False
    # Static extra keys, "tenant:sha256hex-of-key" entries (for deployments that inject secrets).
    api_keys: list[str] = Field(default_factory=list)
    key_cache_s: float = Field(default=5.0, ge=0, le=300)  # a revoked key stops working within this

    # --- quotas per key (defaults; `keys create --max-...` overrides them per key). Usage is counted
    # per tenant; the request rate per key. Anonymous (loopback, no keys) use is unlimited unless
    # quotas_for_anonymous is set.
    quota_concurrent_jobs: int = Field(default=4, ge=0)  # queued + running + cancelling
    quota_total_kimg: float = Field(default=100_000.0, ge=0)  # finished jobs count what they trained
    quota_storage_bytes: int = Field(default=20 * 1024**3, ge=0)  # everything under tenants/{tenant}/
    quota_requests_per_s: float = Field(default=20.0, gt=0)  # token bucket refill rate
    quota_burst: int = Field(default=100, ge=1)  # token bucket size
    quotas_for_anonymous: bool = False

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'diggan.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"
        if not self.result_backend:
            self.result_backend = f"db+sqlite:///{self.data_dir / 'results.sqlite'}"
        if self.psi_min > self.psi_max:
            raise ValueError("psi_min must be <= psi_max")
        self._refuse_well_known_secrets()
        return self

    def _refuse_well_known_secrets(self) -> None:
        from sqlalchemy.engine import make_url

        found = []
        if self.storage == "s3" and self.s3_secret_key is not None \
                and self.s3_secret_key.get_secret_value().lower() in WELL_KNOWN_SECRETS:
            found.append("DIGGAN_S3_SECRET_KEY")
        if not self.database_url.startswith("sqlite"):
            password = make_url(self.database_url).password
            if password is not None and str(password).lower() in WELL_KNOWN_SECRETS:
                found.append("the password in DIGGAN_DATABASE_URL")
        if found:
            raise ValueError(f"refusing to start: {' and '.join(found)} is a well-known default; set a real secret "
                             "(`make compose-env` writes random ones to .env)")

    @property
    def training_threads(self) -> int:
        import os

        return self.torch_threads or max(1, (os.cpu_count() or 1) - 1)

    @property
    def storage_root(self) -> Path:
        return self.data_dir / "store"

    @property
    def embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith(("sqla+", "filesystem:"))

    @property
    def auth_enabled(self) -> bool:
        """Every request needs a key (else the API serves loopback clients only)."""
        return self.auth_required or bool(self.api_keys)

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
