"""Department member rules (automatic pause, statistics window) and missed offers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('department') as batch:
        batch.add_column(sa.Column('pause_after_missed', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('stats_window_days', sa.Integer(), server_default='1', nullable=False))
        batch.create_check_constraint(
            op.f('ck_department_member_rules'), 'pause_after_missed >= 0 AND stats_window_days BETWEEN 1 AND 31')
    op.create_table('missed_offer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('employee_id', sa.Integer(), nullable=True),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('call_uuid', sa.String(length=64), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rang_ms', sa.Integer(), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("result IN ('no_answer', 'rejected', 'busy', 'unregistered')", name=op.f('ck_missed_offer_result')),
    sa.CheckConstraint('rang_ms >= 0', name=op.f('ck_missed_offer_rang')),
    sa.ForeignKeyConstraint(['department_id'], ['department.id'], name=op.f('fk_missed_offer_department_id_department'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['employee_id'], ['employee.id'], name=op.f('fk_missed_offer_employee_id_employee'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_missed_offer_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_missed_offer'))
    )
    op.create_index(op.f('ix_missed_offer_employee_id'), 'missed_offer', ['employee_id'], unique=False)
    op.create_index(op.f('ix_missed_offer_offered_at'), 'missed_offer', ['offered_at'], unique=False)
    op.create_index(op.f('ix_missed_offer_tenant_id'), 'missed_offer', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_missed_offer_tenant_id'), table_name='missed_offer')
    op.drop_index(op.f('ix_missed_offer_offered_at'), table_name='missed_offer')
    op.drop_index(op.f('ix_missed_offer_employee_id'), table_name='missed_offer')
    op.drop_table('missed_offer')
    with op.batch_alter_table('department') as batch:
        batch.drop_constraint(op.f('ck_department_member_rules'), type_='check')
        batch.drop_column('stats_window_days')
        batch.drop_column('pause_after_missed')
