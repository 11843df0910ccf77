"""job names, metadata and webhooks; calibrations

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

Jobs get a name, a metadata map and a webhook; tenants a default webhook and signing secret; webhook
deliveries an outbox table; training setups measured calibrations (issue: operations).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.core.db.types import JSONType, UTCDateTime, db_now  # noqa: F401

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calibrations',
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('device', sa.String(length=80), nullable=False),
    sa.Column('sec_per_kimg', sa.Float(), nullable=False),
    sa.Column('measured_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('signature', 'device', name=op.f('pk_calibrations'))
    )
    op.create_table('tenant_webhooks',
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=True),
    sa.Column('events', JSONType, nullable=False),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('updated_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', name=op.f('pk_tenant_webhooks'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('msg_id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=63), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('payload', JSONType, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.Column('lease_until', UTCDateTime(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', UTCDateTime(), server_default=db_now(), nullable=False),
    sa.Column('delivered_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_webhook_deliveries_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('msg_id', name=op.f('uq_webhook_deliveries_msg_id'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_job', ['job_id', 'id'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=200), nullable=True))
        # Existing jobs get an empty map.
        batch_op.add_column(sa.Column('metadata', JSONType, nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('webhook', JSONType, nullable=True))
        batch_op.create_index('ix_jobs_tenant_name', ['tenant', 'name'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_name')
        batch_op.drop_column('webhook')
        batch_op.drop_column('metadata')
        batch_op.drop_column('name')

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_job')
        batch_op.drop_index('ix_webhook_deliveries_due')

    op.drop_table('webhook_deliveries')
    op.drop_table('tenant_webhooks')
    op.drop_table('calibrations')
