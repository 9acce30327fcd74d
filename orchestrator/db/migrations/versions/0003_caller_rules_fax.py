"""Caller-based rules, the fax target and received faxes.

* ``caller_rule``: a tenant's caller-based rules (tried before the schedule, by position);
* ``fax_message``: faxes received for a voicemail box;
* ``call_record(tenant_id, caller, started_at)`` index: a caller's last agent;
* every route-target check constraint accepts the new kind ``fax`` (a box id), so they
  are recreated (batch mode rebuilds the tables on SQLite).

The constraint text is written out here (not imported from the models) so that this
revision keeps building the same schema whatever the models become.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

OLD_REF_KINDS = ('department', 'employee', 'menu', 'voicemail')
NEW_REF_KINDS = OLD_REF_KINDS + ('fax',)
TARGETS = (  # (table, prefix) of every route-target column group before this revision
    ('department', 'no_answer'),
    ('phone_number', 'work'),
    ('phone_number', 'after_hours'),
    ('voice_menu', 'default'),
    ('voice_menu_option', 'target'),
)


def target_sql(prefix: str, ref_kinds: tuple[str, ...]) -> str:
    k, r, n, s = ('%s_%s' % (prefix, c) for c in ('kind', 'ref_id', 'number', 'sound'))
    refs = ', '.join("'%s'" % kind for kind in ref_kinds)
    return (
        "({k} IS NULL AND {r} IS NULL AND {n} IS NULL AND {s} IS NULL)"
        " OR ({k} IS NOT NULL AND {k} IN ({refs}) AND {r} IS NOT NULL AND {n} IS NULL AND {s} IS NULL)"
        " OR ({k} IS NOT NULL AND {k} = 'external' AND {n} IS NOT NULL AND {r} IS NULL AND {s} IS NULL)"
        " OR ({k} IS NOT NULL AND {k} = 'announcement' AND {r} IS NULL AND {n} IS NULL)"
    ).format(k=k, r=r, n=n, s=s, refs=refs)


def _retarget(ref_kinds: tuple[str, ...]) -> None:
    for table, prefix in TARGETS:
        name = op.f('ck_%s_%s_target' % (table, prefix))
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_='check')
            batch.create_check_constraint(name, target_sql(prefix, ref_kinds))


def upgrade() -> None:
    _retarget(NEW_REF_KINDS)
    op.create_table('caller_rule',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('match_kind', sa.Enum('country', 'region', 'city', 'prefix', 'list', 'last_agent', 'crm', name='caller_match', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('match_values', sa.Text(), nullable=False),
    sa.Column('negate', sa.Boolean(), nullable=False),
    sa.Column('block', sa.Boolean(), nullable=False),
    sa.Column('numbers', sa.Text(), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('crm_url', sa.String(length=500), nullable=True),
    sa.Column('crm_timeout_ms', sa.Integer(), nullable=False),
    sa.Column('target_kind', sa.String(length=16), nullable=True),
    sa.Column('target_ref_id', sa.Integer(), nullable=True),
    sa.Column('target_number', sa.String(length=32), nullable=True),
    sa.Column('target_sound', sa.String(length=255), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint(target_sql('target', NEW_REF_KINDS), name=op.f('ck_caller_rule_target_target')),
    sa.CheckConstraint('crm_timeout_ms BETWEEN 100 AND 1500', name=op.f('ck_caller_rule_crm_timeout')),
    sa.CheckConstraint('days BETWEEN 1 AND 3650', name=op.f('ck_caller_rule_days')),
    sa.CheckConstraint('position >= 0', name=op.f('ck_caller_rule_position')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_caller_rule_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caller_rule')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_caller_rule_tenant_id_name'))
    )
    op.create_index(op.f('ix_caller_rule_tenant_id'), 'caller_rule', ['tenant_id'], unique=False)
    op.create_table('fax_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('box_id', sa.Integer(), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('call_uuid', sa.String(length=64), nullable=False),
    sa.Column('document_path', sa.String(length=512), nullable=False),
    sa.Column('pages', sa.Integer(), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('result_code', sa.Integer(), nullable=False),
    sa.Column('result_text', sa.String(length=255), nullable=False),
    sa.Column('remote_station', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('pages >= 0', name=op.f('ck_fax_message_pages')),
    sa.ForeignKeyConstraint(['tenant_id', 'box_id'], ['voicemail_box.tenant_id', 'voicemail_box.id'], name=op.f('fk_fax_message_tenant_id_box_id_voicemail_box'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_fax_message_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fax_message'))
    )
    op.create_index(op.f('ix_fax_message_box_id'), 'fax_message', ['box_id'], unique=False)
    op.create_index(op.f('ix_fax_message_tenant_id'), 'fax_message', ['tenant_id'], unique=False)
    op.create_index('ix_call_record_tenant_caller', 'call_record', ['tenant_id', 'caller', 'started_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_call_record_tenant_caller', table_name='call_record')
    op.drop_index(op.f('ix_fax_message_tenant_id'), table_name='fax_message')
    op.drop_index(op.f('ix_fax_message_box_id'), table_name='fax_message')
    op.drop_table('fax_message')
    op.drop_index(op.f('ix_caller_rule_tenant_id'), table_name='caller_rule')
    op.drop_table('caller_rule')
    # Fax targets cannot exist before this revision: menu options with one go (their
    # target is required), other fields become empty.
    op.execute("DELETE FROM voice_menu_option WHERE target_kind = 'fax'")
    for table, prefix in TARGETS:
        op.execute(
            "UPDATE {t} SET {p}_kind = NULL, {p}_ref_id = NULL, {p}_number = NULL, {p}_sound = NULL "
            "WHERE {p}_kind = 'fax'".format(t=table, p=prefix)
        )
    _retarget(OLD_REF_KINDS)
