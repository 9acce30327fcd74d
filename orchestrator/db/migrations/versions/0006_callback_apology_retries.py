"""Callbacks from the queue: the expired callback's apology and voicemail box, the "this
is your callback" prompt, and the department's attempts to reach the client with the
delay between them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('department') as batch:
        batch.add_column(sa.Column('queue_callback_apology', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('queue_callback_prompt', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('queue_callback_attempts', sa.Integer(), server_default='3', nullable=False))
        batch.add_column(sa.Column('queue_callback_retry_delay', sa.Integer(), server_default='60', nullable=False))
        batch.create_check_constraint(op.f('ck_department_queue_callback_retries'),
                                      'queue_callback_attempts BETWEEN 1 AND 10 AND queue_callback_retry_delay BETWEEN 0 AND 3600')
        batch.add_column(sa.Column('queue_callback_box_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f('fk_department_tenant_id_queue_callback_box_id_voicemail_box'), 'voicemail_box',
                                 ['tenant_id', 'queue_callback_box_id'], ['tenant_id', 'id'])


def downgrade() -> None:
    with op.batch_alter_table('department') as batch:
        batch.drop_constraint(op.f('fk_department_tenant_id_queue_callback_box_id_voicemail_box'), type_='foreignkey')
        batch.drop_column('queue_callback_box_id')
        batch.drop_constraint(op.f('ck_department_queue_callback_retries'), type_='check')
        batch.drop_column('queue_callback_retry_delay')
        batch.drop_column('queue_callback_attempts')
        batch.drop_column('queue_callback_prompt')
        batch.drop_column('queue_callback_apology')
