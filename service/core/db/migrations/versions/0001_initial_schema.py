"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-12-03

Every table of service/core/db/models.py as of the move from JSON records to a database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.core.db.types import JSONType, UTCDateTime, db_now  # noqa: F401

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('quotas', JSONType, nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.Column('revoked_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_tenant'), ['tenant'], unique=False)

    op.create_table('blobs',
    sa.Column('key', sa.String(length=1024), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('owner_type', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.String(length=40), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_blobs'))
    )
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.create_index('ix_blobs_owner', ['owner_type', 'owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_blobs_tenant'), ['tenant'], unique=False)

    op.create_table('datasets',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('num_images', sa.Integer(), nullable=False),
    sa.Column('resolution', sa.Integer(), nullable=False),
    sa.Column('warnings', JSONType, nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('original_bytes', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('num_classes', sa.Integer(), nullable=False),
    sa.Column('class_names', JSONType, nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets'))
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index('ix_datasets_tenant_id', ['tenant', 'id'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'key_hash', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('object_deletions',
    sa.Column('prefix', sa.String(length=1024), nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('prefix', name=op.f('pk_object_deletions'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('config', JSONType, nullable=False),
    sa.Column('request', JSONType, nullable=False),
    sa.Column('kimg', sa.Float(), nullable=False),
    sa.Column('total_kimg', sa.Float(), nullable=False),
    sa.Column('charged_kimg', sa.Float(), nullable=False),
    sa.Column('eta_seconds', sa.Float(), nullable=True),
    sa.Column('latest_tick', JSONType, nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=True),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('cancel_requested_at', UTCDateTime(), nullable=True),
    sa.Column('heartbeat_at', UTCDateTime(), nullable=True),
    sa.Column('enqueued_at', UTCDateTime(), nullable=True),
    sa.Column('enqueue_count', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('device', sa.String(length=32), nullable=True),
    sa.Column('versions', JSONType, nullable=False),
    sa.Column('dataset_sha256', sa.String(length=64), nullable=True),
    sa.Column('latest_checkpoint', sa.String(length=80), nullable=True),
    sa.Column('best_checkpoint', sa.String(length=80), nullable=True),
    sa.Column('resumes', JSONType, nullable=False),
    sa.Column('init_from', JSONType, nullable=True),
    sa.Column('idempotency_key_hash', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_status', ['status'], unique=False)
        batch_op.create_index('ix_jobs_tenant_dataset', ['tenant', 'dataset_id'], unique=False)
        batch_op.create_index('ix_jobs_tenant_id', ['tenant', 'id'], unique=False)
        batch_op.create_index('ix_jobs_tenant_status', ['tenant', 'status'], unique=False)

    op.create_table('models',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('resolution', sa.Integer(), nullable=False),
    sa.Column('network', JSONType, nullable=False),
    sa.Column('has_discriminator', sa.Boolean(), nullable=False),
    sa.Column('notes', JSONType, nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('original_bytes', sa.BigInteger(), nullable=False),
    sa.Column('original_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models'))
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index('ix_models_tenant_id', ['tenant', 'id'], unique=False)

    op.create_table('work_slots',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('weight', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_work_slots'))
    )
    with op.batch_alter_table('work_slots', schema=None) as batch_op:
        batch_op.create_index('ix_work_slots_tenant_kind', ['tenant', 'kind'], unique=False)

    op.create_table('rate_buckets',
    sa.Column('bucket', sa.String(length=120), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('stamp', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('bucket', name=op.f('pk_rate_buckets'))
    )
    op.create_table('tenants',
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_tenants'))
    )
    op.create_table('checkpoints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('object_key', sa.String(length=1024), nullable=False),
    sa.Column('grid_key', sa.String(length=1024), nullable=True),
    sa.Column('grid', sa.String(length=80), nullable=True),
    sa.Column('kimg', sa.Float(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('metrics', JSONType, nullable=False),
    sa.Column('is_best', sa.Boolean(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_checkpoints_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoints'))
    )
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.create_index('uq_checkpoints_job_name', ['job_id', 'name'], unique=True)

    op.create_table('sample_sets',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('checkpoint', sa.String(length=80), nullable=False),
    sa.Column('psi', sa.Float(), nullable=False),
    sa.Column('class_index', sa.Integer(), nullable=True),
    sa.Column('seeds', JSONType, nullable=False),
    sa.Column('object_prefix', sa.String(length=1024), nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_sample_sets_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_sets'))
    )
    with op.batch_alter_table('sample_sets', schema=None) as batch_op:
        batch_op.create_index('ix_sample_sets_job', ['job_id', 'id'], unique=False)

    op.create_table('ticks',
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('tick', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('kimg', sa.Float(), nullable=False),
    sa.Column('stats', JSONType, nullable=False),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_ticks_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'tick', name=op.f('pk_ticks'))
    )


def downgrade() -> None:
    op.drop_table('ticks')
    with op.batch_alter_table('sample_sets', schema=None) as batch_op:
        batch_op.drop_index('ix_sample_sets_job')

    op.drop_table('sample_sets')
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_index('uq_checkpoints_job_name')

    op.drop_table('checkpoints')
    op.drop_table('tenants')
    op.drop_table('rate_buckets')
    with op.batch_alter_table('work_slots', schema=None) as batch_op:
        batch_op.drop_index('ix_work_slots_tenant_kind')
    op.drop_table('work_slots')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index('ix_models_tenant_id')

    op.drop_table('models')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_status')
        batch_op.drop_index('ix_jobs_tenant_id')
        batch_op.drop_index('ix_jobs_tenant_dataset')
        batch_op.drop_index('ix_jobs_status')

    op.drop_table('jobs')
    op.drop_table('object_deletions')
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index('ix_datasets_tenant_id')

    op.drop_table('datasets')
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_blobs_tenant'))
        batch_op.drop_index('ix_blobs_owner')

    op.drop_table('blobs')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_tenant'))

    op.drop_table('api_keys')
