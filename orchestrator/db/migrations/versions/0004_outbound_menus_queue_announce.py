"""Outbound caller ID per department and number dial codes, "back" in voice menus,
queue announcement interval, the call-history index of outbound calls' destinations,
the tenant's caller ID policy for forwarded calls.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tenant') as batch:
        batch.add_column(sa.Column('forward_caller_id', sa.String(length=8), server_default='caller', nullable=False))
        batch.create_check_constraint(op.f('ck_tenant_forward_caller_id'), "forward_caller_id IN ('caller', 'number')")
    op.create_index('ix_call_record_tenant_destination', 'call_record', ['tenant_id', 'destination', 'started_at'])
    with op.batch_alter_table('department') as batch:
        batch.add_column(sa.Column('outbound_caller_id', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('queue_announce_every', sa.Integer(), server_default='30', nullable=False))
        batch.create_check_constraint(op.f('ck_department_queue_announce'), 'queue_announce_every BETWEEN 5 AND 600')
    with op.batch_alter_table('phone_number') as batch:
        batch.add_column(sa.Column('dial_code', sa.String(length=3), nullable=True))
        batch.create_unique_constraint(op.f('uq_phone_number_tenant_id_dial_code'), ['tenant_id', 'dial_code'])
        batch.create_check_constraint(op.f('ck_phone_number_dial_code'), "length(dial_code) BETWEEN 1 AND 3")
    with op.batch_alter_table('voice_menu') as batch:
        batch.add_column(sa.Column('back_digit', sa.String(length=1), nullable=True))
        batch.create_check_constraint(op.f('ck_voice_menu_back_digit'), "back_digit IN ('0','1','2','3','4','5','6','7','8','9','*')")


def downgrade() -> None:
    with op.batch_alter_table('voice_menu') as batch:
        batch.drop_constraint(op.f('ck_voice_menu_back_digit'), type_='check')
        batch.drop_column('back_digit')
    with op.batch_alter_table('phone_number') as batch:
        batch.drop_constraint(op.f('ck_phone_number_dial_code'), type_='check')
        batch.drop_constraint(op.f('uq_phone_number_tenant_id_dial_code'), type_='unique')
        batch.drop_column('dial_code')
    with op.batch_alter_table('department') as batch:
        batch.drop_constraint(op.f('ck_department_queue_announce'), type_='check')
        batch.drop_column('queue_announce_every')
        batch.drop_column('outbound_caller_id')
    op.drop_index('ix_call_record_tenant_destination', table_name='call_record')
    with op.batch_alter_table('tenant') as batch:
        batch.drop_constraint(op.f('ck_tenant_forward_caller_id'), type_='check')
        batch.drop_column('forward_caller_id')
