"""Everything a process needs to work on shared state, built once from Settings.

    core = open_core(settings)        # the database (migrated to head), the object store, repositories
    core.jobs.find(tenant, job_id)

The API keeps one on app.state; a worker process keeps one for its lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.core.apikeys import KeyStore
from service.core.db import Database, upgrade
from service.core.jobs import JobRepo
from service.core.latents import LatentRepo
from service.core.projections import ProjectionRepo
from service.core.samples import SampleSetRepo
from service.core.settings import Settings
from service.core.slots import Slots
from service.core.storage import ObjectStore, build_store
from service.core.uploads import DatasetRepo, ModelRepo


@dataclass
class Core:
    settings: Settings
    db: Database
    store: ObjectStore
    jobs: JobRepo
    datasets: DatasetRepo
    models: ModelRepo
    samples: SampleSetRepo
    keys: KeyStore
    slots: Slots
    latents: LatentRepo
    projections: ProjectionRepo

    def close(self) -> None:
        self.db.dispose()


def open_core(settings: Settings, migrate: bool | None = None) -> Core:
    """Connect (and, unless told otherwise, bring the schema to head; safe from several processes)."""
    settings.ensure_dirs()
    db = Database(settings.database_url, settings.db_pool_size)
    if settings.db_auto_migrate if migrate is None else migrate:
        upgrade(db)
    return Core(settings=settings, db=db, store=build_store(settings), jobs=JobRepo(db), datasets=DatasetRepo(db),
                models=ModelRepo(db), samples=SampleSetRepo(db), keys=KeyStore(db, settings), slots=Slots(db),
                latents=LatentRepo(db), projections=ProjectionRepo(db))
