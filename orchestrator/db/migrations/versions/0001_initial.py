"""Initial schema: tenants and their routing data, history, admin accounts.

Generated with ``alembic revision --autogenerate`` against PostgreSQL, then checked by
hand: composite (tenant_id, id) foreign keys, route-target check constraints, the
partial unique index "one default schedule per tenant", and the seeded
``routing_meta.index_version`` row. Runs on PostgreSQL and (batch mode) SQLite.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('routing_meta',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_routing_meta'))
    )
    op.bulk_insert(
        sa.table('routing_meta', sa.column('key', sa.String), sa.column('value', sa.Integer)),
        [{'key': 'index_version', 'value': 1}],
    )
    op.create_table('tenant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('sip_domain', sa.String(length=253), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('max_concurrent_calls', sa.Integer(), nullable=False),
    sa.Column('routing_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('max_concurrent_calls >= 0', name=op.f('ck_tenant_max_calls')),
    sa.CheckConstraint('routing_version >= 1', name=op.f('ck_tenant_routing_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant')),
    sa.UniqueConstraint('sip_domain', name=op.f('uq_tenant_sip_domain'))
    )
    op.create_table('department',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('extension', sa.String(length=6), nullable=False),
    sa.Column('strategy', sa.Enum('ring_all', 'longest_idle', 'one_by_one', 'round_robin', 'increasing', 'escalation', 'weighted', 'least_talk_time', 'fewest_calls', 'random', name='strategy', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('ring_seconds', sa.Integer(), nullable=False),
    sa.Column('no_answer_timeout', sa.Integer(), nullable=False),
    sa.Column('wrapup_seconds', sa.Integer(), nullable=False),
    sa.Column('queue_music', sa.String(length=255), nullable=True),
    sa.Column('queue_announcement', sa.String(length=255), nullable=True),
    sa.Column('queue_announce_position', sa.Boolean(), nullable=False),
    sa.Column('queue_max_wait', sa.Integer(), nullable=False),
    sa.Column('queue_max_length', sa.Integer(), nullable=False),
    sa.Column('queue_callback_allowed', sa.Boolean(), nullable=False),
    sa.Column('queue_callback_key', sa.String(length=1), nullable=False),
    sa.Column('no_answer_kind', sa.String(length=16), nullable=True),
    sa.Column('no_answer_ref_id', sa.Integer(), nullable=True),
    sa.Column('no_answer_number', sa.String(length=32), nullable=True),
    sa.Column('no_answer_sound', sa.String(length=255), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("(no_answer_kind IS NULL AND no_answer_ref_id IS NULL AND no_answer_number IS NULL AND no_answer_sound IS NULL) OR (no_answer_kind IS NOT NULL AND no_answer_kind IN ('department', 'employee', 'menu', 'voicemail') AND no_answer_ref_id IS NOT NULL AND no_answer_number IS NULL AND no_answer_sound IS NULL) OR (no_answer_kind IS NOT NULL AND no_answer_kind = 'external' AND no_answer_number IS NOT NULL AND no_answer_ref_id IS NULL AND no_answer_sound IS NULL) OR (no_answer_kind IS NOT NULL AND no_answer_kind = 'announcement' AND no_answer_ref_id IS NULL AND no_answer_number IS NULL)", name=op.f('ck_department_no_answer_target')),
    sa.CheckConstraint('queue_max_wait > 0 AND queue_max_length >= 0', name=op.f('ck_department_queue_limits')),
    sa.CheckConstraint('ring_seconds > 0 AND no_answer_timeout > 0 AND wrapup_seconds >= 0', name=op.f('ck_department_times')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_department_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_department')),
    sa.UniqueConstraint('tenant_id', 'extension', name=op.f('uq_department_tenant_id_extension')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_department_tenant_id_id'),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_department_tenant_id_name'))
    )
    op.create_index(op.f('ix_department_tenant_id'), 'department', ['tenant_id'], unique=False)
    op.create_table('schedule',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_schedule_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_schedule_tenant_id_id'),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_schedule_tenant_id_name'))
    )
    op.create_index(op.f('ix_schedule_tenant_id'), 'schedule', ['tenant_id'], unique=False)
    op.create_index('uq_schedule_one_default', 'schedule', ['tenant_id'], unique=True, postgresql_where=sa.text('is_default'), sqlite_where=sa.text('is_default'))
    op.create_table('voice_menu',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('extension', sa.String(length=6), nullable=True),
    sa.Column('greeting', sa.String(length=255), nullable=True),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('invalid_sound', sa.String(length=255), nullable=True),
    sa.Column('max_invalid', sa.Integer(), nullable=False),
    sa.Column('direct_dial', sa.Boolean(), nullable=False),
    sa.Column('default_kind', sa.String(length=16), nullable=True),
    sa.Column('default_ref_id', sa.Integer(), nullable=True),
    sa.Column('default_number', sa.String(length=32), nullable=True),
    sa.Column('default_sound', sa.String(length=255), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("(default_kind IS NULL AND default_ref_id IS NULL AND default_number IS NULL AND default_sound IS NULL) OR (default_kind IS NOT NULL AND default_kind IN ('department', 'employee', 'menu', 'voicemail') AND default_ref_id IS NOT NULL AND default_number IS NULL AND default_sound IS NULL) OR (default_kind IS NOT NULL AND default_kind = 'external' AND default_number IS NOT NULL AND default_ref_id IS NULL AND default_sound IS NULL) OR (default_kind IS NOT NULL AND default_kind = 'announcement' AND default_ref_id IS NULL AND default_number IS NULL)", name=op.f('ck_voice_menu_default_target')),
    sa.CheckConstraint('timeout_seconds > 0 AND max_invalid > 0', name=op.f('ck_voice_menu_limits')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_voice_menu_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voice_menu')),
    sa.UniqueConstraint('tenant_id', 'extension', name=op.f('uq_voice_menu_tenant_id_extension')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_voice_menu_tenant_id_id'),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_voice_menu_tenant_id_name'))
    )
    op.create_index(op.f('ix_voice_menu_tenant_id'), 'voice_menu', ['tenant_id'], unique=False)
    op.create_table('voicemail_box',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('extension', sa.String(length=6), nullable=True),
    sa.Column('greeting', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('max_message_seconds', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('max_message_seconds > 0', name=op.f('ck_voicemail_box_max_message_seconds')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_voicemail_box_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voicemail_box')),
    sa.UniqueConstraint('tenant_id', 'extension', name=op.f('uq_voicemail_box_tenant_id_extension')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_voicemail_box_tenant_id_id'),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_voicemail_box_tenant_id_name'))
    )
    op.create_index(op.f('ix_voicemail_box_tenant_id'), 'voicemail_box', ['tenant_id'], unique=False)
    op.create_table('employee',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('extension', sa.String(length=6), nullable=False),
    sa.Column('sip_password', sa.String(length=128), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('role', sa.Enum('administrator', 'user', 'restricted', name='role', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('mobile', sa.String(length=32), nullable=True),
    sa.Column('forward_to_mobile_after', sa.Integer(), nullable=True),
    sa.Column('ring_seconds', sa.Integer(), nullable=False),
    sa.Column('outbound_caller_id', sa.String(length=32), nullable=True),
    sa.Column('logged_in', sa.Boolean(), nullable=False),
    sa.Column('voicemail_box_id', sa.Integer(), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('forward_to_mobile_after IS NULL OR forward_to_mobile_after >= 0', name=op.f('ck_employee_forward_after')),
    sa.CheckConstraint('ring_seconds > 0', name=op.f('ck_employee_ring_seconds')),
    sa.ForeignKeyConstraint(['tenant_id', 'voicemail_box_id'], ['voicemail_box.tenant_id', 'voicemail_box.id'], name=op.f('fk_employee_tenant_id_voicemail_box_id_voicemail_box')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_employee_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_employee')),
    sa.UniqueConstraint('tenant_id', 'extension', name=op.f('uq_employee_tenant_id_extension')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_employee_tenant_id_id')
    )
    op.create_index(op.f('ix_employee_tenant_id'), 'employee', ['tenant_id'], unique=False)
    op.create_table('phone_number',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('e164', sa.String(length=32), nullable=False),
    sa.Column('mode', sa.Enum('always', 'schedule', name='mode', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('schedule_id', sa.Integer(), nullable=True),
    sa.Column('work_kind', sa.String(length=16), nullable=True),
    sa.Column('work_ref_id', sa.Integer(), nullable=True),
    sa.Column('work_number', sa.String(length=32), nullable=True),
    sa.Column('work_sound', sa.String(length=255), nullable=True),
    sa.Column('after_hours_kind', sa.String(length=16), nullable=True),
    sa.Column('after_hours_ref_id', sa.Integer(), nullable=True),
    sa.Column('after_hours_number', sa.String(length=32), nullable=True),
    sa.Column('after_hours_sound', sa.String(length=255), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("(after_hours_kind IS NULL AND after_hours_ref_id IS NULL AND after_hours_number IS NULL AND after_hours_sound IS NULL) OR (after_hours_kind IS NOT NULL AND after_hours_kind IN ('department', 'employee', 'menu', 'voicemail') AND after_hours_ref_id IS NOT NULL AND after_hours_number IS NULL AND after_hours_sound IS NULL) OR (after_hours_kind IS NOT NULL AND after_hours_kind = 'external' AND after_hours_number IS NOT NULL AND after_hours_ref_id IS NULL AND after_hours_sound IS NULL) OR (after_hours_kind IS NOT NULL AND after_hours_kind = 'announcement' AND after_hours_ref_id IS NULL AND after_hours_number IS NULL)", name=op.f('ck_phone_number_after_hours_target')),
    sa.CheckConstraint("(work_kind IS NULL AND work_ref_id IS NULL AND work_number IS NULL AND work_sound IS NULL) OR (work_kind IS NOT NULL AND work_kind IN ('department', 'employee', 'menu', 'voicemail') AND work_ref_id IS NOT NULL AND work_number IS NULL AND work_sound IS NULL) OR (work_kind IS NOT NULL AND work_kind = 'external' AND work_number IS NOT NULL AND work_ref_id IS NULL AND work_sound IS NULL) OR (work_kind IS NOT NULL AND work_kind = 'announcement' AND work_ref_id IS NULL AND work_number IS NULL)", name=op.f('ck_phone_number_work_target')),
    sa.ForeignKeyConstraint(['tenant_id', 'schedule_id'], ['schedule.tenant_id', 'schedule.id'], name=op.f('fk_phone_number_tenant_id_schedule_id_schedule')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_phone_number_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_phone_number')),
    sa.UniqueConstraint('e164', name=op.f('uq_phone_number_e164')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_phone_number_tenant_id_id')
    )
    op.create_index(op.f('ix_phone_number_tenant_id'), 'phone_number', ['tenant_id'], unique=False)
    op.create_table('schedule_exception',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('schedule_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('closed', sa.Boolean(), nullable=False),
    sa.Column('intervals', sa.String(length=255), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'schedule_id'], ['schedule.tenant_id', 'schedule.id'], name=op.f('fk_schedule_exception_tenant_id_schedule_id_schedule'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_schedule_exception_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_exception')),
    sa.UniqueConstraint('schedule_id', 'day', name=op.f('uq_schedule_exception_schedule_id_day'))
    )
    op.create_index(op.f('ix_schedule_exception_tenant_id'), 'schedule_exception', ['tenant_id'], unique=False)
    op.create_table('schedule_interval',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('schedule_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('start_minute', sa.Integer(), nullable=False),
    sa.Column('end_minute', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('start_minute >= 0 AND start_minute < end_minute AND end_minute <= 2880', name=op.f('ck_schedule_interval_minutes')),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_schedule_interval_weekday')),
    sa.ForeignKeyConstraint(['tenant_id', 'schedule_id'], ['schedule.tenant_id', 'schedule.id'], name=op.f('fk_schedule_interval_tenant_id_schedule_id_schedule'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_schedule_interval_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_interval'))
    )
    op.create_index(op.f('ix_schedule_interval_schedule_id'), 'schedule_interval', ['schedule_id'], unique=False)
    op.create_index(op.f('ix_schedule_interval_tenant_id'), 'schedule_interval', ['tenant_id'], unique=False)
    op.create_table('voice_menu_option',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('menu_id', sa.Integer(), nullable=False),
    sa.Column('digit', sa.String(length=1), nullable=False),
    sa.Column('target_kind', sa.String(length=16), nullable=True),
    sa.Column('target_ref_id', sa.Integer(), nullable=True),
    sa.Column('target_number', sa.String(length=32), nullable=True),
    sa.Column('target_sound', sa.String(length=255), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("(target_kind IS NULL AND target_ref_id IS NULL AND target_number IS NULL AND target_sound IS NULL) OR (target_kind IS NOT NULL AND target_kind IN ('department', 'employee', 'menu', 'voicemail') AND target_ref_id IS NOT NULL AND target_number IS NULL AND target_sound IS NULL) OR (target_kind IS NOT NULL AND target_kind = 'external' AND target_number IS NOT NULL AND target_ref_id IS NULL AND target_sound IS NULL) OR (target_kind IS NOT NULL AND target_kind = 'announcement' AND target_ref_id IS NULL AND target_number IS NULL)", name=op.f('ck_voice_menu_option_target_target')),
    sa.CheckConstraint("digit IN ('0','1','2','3','4','5','6','7','8','9','*','#')", name=op.f('ck_voice_menu_option_digit')),
    sa.CheckConstraint('target_kind IS NOT NULL', name=op.f('ck_voice_menu_option_target_required')),
    sa.ForeignKeyConstraint(['tenant_id', 'menu_id'], ['voice_menu.tenant_id', 'voice_menu.id'], name=op.f('fk_voice_menu_option_tenant_id_menu_id_voice_menu'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_voice_menu_option_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voice_menu_option')),
    sa.UniqueConstraint('menu_id', 'digit', name=op.f('uq_voice_menu_option_menu_id_digit'))
    )
    op.create_index(op.f('ix_voice_menu_option_tenant_id'), 'voice_menu_option', ['tenant_id'], unique=False)
    op.create_table('voicemail_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('box_id', sa.Integer(), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('call_uuid', sa.String(length=64), nullable=False),
    sa.Column('recording_path', sa.String(length=512), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('duration_ms >= 0', name=op.f('ck_voicemail_message_duration')),
    sa.ForeignKeyConstraint(['tenant_id', 'box_id'], ['voicemail_box.tenant_id', 'voicemail_box.id'], name=op.f('fk_voicemail_message_tenant_id_box_id_voicemail_box'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_voicemail_message_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voicemail_message'))
    )
    op.create_index(op.f('ix_voicemail_message_box_id'), 'voicemail_message', ['box_id'], unique=False)
    op.create_index(op.f('ix_voicemail_message_tenant_id'), 'voicemail_message', ['tenant_id'], unique=False)
    op.create_table('admin_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.Enum('operator', 'tenant_admin', 'user', 'restricted', name='admin_role', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('employee_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("(role = 'operator' AND tenant_id IS NULL) OR (role <> 'operator' AND tenant_id IS NOT NULL)", name=op.f('ck_admin_user_operator_has_no_tenant')),
    sa.ForeignKeyConstraint(['employee_id'], ['employee.id'], name=op.f('fk_admin_user_employee_id_employee'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_admin_user_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_user')),
    sa.UniqueConstraint('username', name=op.f('uq_admin_user_username'))
    )
    op.create_index(op.f('ix_admin_user_tenant_id'), 'admin_user', ['tenant_id'], unique=False)
    op.create_table('call_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_uuid', sa.String(length=64), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_by_employee_id', sa.Integer(), nullable=True),
    sa.Column('hangup_cause', sa.String(length=64), nullable=True),
    sa.Column('route', sa.Text(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("direction IN ('inbound', 'internal', 'outbound')", name=op.f('ck_call_record_direction')),
    sa.ForeignKeyConstraint(['answered_by_employee_id'], ['employee.id'], name=op.f('fk_call_record_answered_by_employee_id_employee'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_call_record_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_record')),
    sa.UniqueConstraint('call_uuid', name=op.f('uq_call_record_call_uuid'))
    )
    op.create_index(op.f('ix_call_record_answered_by_employee_id'), 'call_record', ['answered_by_employee_id'], unique=False)
    op.create_index(op.f('ix_call_record_started_at'), 'call_record', ['started_at'], unique=False)
    op.create_index(op.f('ix_call_record_tenant_id'), 'call_record', ['tenant_id'], unique=False)
    op.create_table('department_member',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('employee_id', sa.Integer(), nullable=False),
    sa.Column('order', sa.Integer(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('escalation_offset', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('weight >= 0 AND escalation_offset >= 0', name=op.f('ck_department_member_weights')),
    sa.ForeignKeyConstraint(['tenant_id', 'department_id'], ['department.tenant_id', 'department.id'], name=op.f('fk_department_member_tenant_id_department_id_department'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'employee_id'], ['employee.tenant_id', 'employee.id'], name=op.f('fk_department_member_tenant_id_employee_id_employee'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_department_member_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_department_member')),
    sa.UniqueConstraint('department_id', 'employee_id', name=op.f('uq_department_member_department_id_employee_id'))
    )
    op.create_index(op.f('ix_department_member_employee_id'), 'department_member', ['employee_id'], unique=False)
    op.create_index(op.f('ix_department_member_tenant_id'), 'department_member', ['tenant_id'], unique=False)
    op.create_table('voicemail_box_owner',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('box_id', sa.Integer(), nullable=False),
    sa.Column('employee_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'box_id'], ['voicemail_box.tenant_id', 'voicemail_box.id'], name=op.f('fk_voicemail_box_owner_tenant_id_box_id_voicemail_box'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'employee_id'], ['employee.tenant_id', 'employee.id'], name=op.f('fk_voicemail_box_owner_tenant_id_employee_id_employee'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_voicemail_box_owner_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voicemail_box_owner')),
    sa.UniqueConstraint('box_id', 'employee_id', name=op.f('uq_voicemail_box_owner_box_id_employee_id'))
    )
    op.create_index(op.f('ix_voicemail_box_owner_employee_id'), 'voicemail_box_owner', ['employee_id'], unique=False)
    op.create_index(op.f('ix_voicemail_box_owner_tenant_id'), 'voicemail_box_owner', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_voicemail_box_owner_tenant_id'), table_name='voicemail_box_owner')
    op.drop_index(op.f('ix_voicemail_box_owner_employee_id'), table_name='voicemail_box_owner')
    op.drop_table('voicemail_box_owner')
    op.drop_index(op.f('ix_department_member_tenant_id'), table_name='department_member')
    op.drop_index(op.f('ix_department_member_employee_id'), table_name='department_member')
    op.drop_table('department_member')
    op.drop_index(op.f('ix_call_record_tenant_id'), table_name='call_record')
    op.drop_index(op.f('ix_call_record_started_at'), table_name='call_record')
    op.drop_index(op.f('ix_call_record_answered_by_employee_id'), table_name='call_record')
    op.drop_table('call_record')
    op.drop_index(op.f('ix_admin_user_tenant_id'), table_name='admin_user')
    op.drop_table('admin_user')
    op.drop_index(op.f('ix_voicemail_message_tenant_id'), table_name='voicemail_message')
    op.drop_index(op.f('ix_voicemail_message_box_id'), table_name='voicemail_message')
    op.drop_table('voicemail_message')
    op.drop_index(op.f('ix_voice_menu_option_tenant_id'), table_name='voice_menu_option')
    op.drop_table('voice_menu_option')
    op.drop_index(op.f('ix_schedule_interval_tenant_id'), table_name='schedule_interval')
    op.drop_index(op.f('ix_schedule_interval_schedule_id'), table_name='schedule_interval')
    op.drop_table('schedule_interval')
    op.drop_index(op.f('ix_schedule_exception_tenant_id'), table_name='schedule_exception')
    op.drop_table('schedule_exception')
    op.drop_index(op.f('ix_phone_number_tenant_id'), table_name='phone_number')
    op.drop_table('phone_number')
    op.drop_index(op.f('ix_employee_tenant_id'), table_name='employee')
    op.drop_table('employee')
    op.drop_index(op.f('ix_voicemail_box_tenant_id'), table_name='voicemail_box')
    op.drop_table('voicemail_box')
    op.drop_index(op.f('ix_voice_menu_tenant_id'), table_name='voice_menu')
    op.drop_table('voice_menu')
    op.drop_index('uq_schedule_one_default', table_name='schedule', postgresql_where=sa.text('is_default'), sqlite_where=sa.text('is_default'))
    op.drop_index(op.f('ix_schedule_tenant_id'), table_name='schedule')
    op.drop_table('schedule')
    op.drop_index(op.f('ix_department_tenant_id'), table_name='department')
    op.drop_table('department')
    op.drop_table('tenant')
    op.drop_table('routing_meta')
