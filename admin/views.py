"""One ModelView per model, configured with class attributes (flask-admin style).

Route targets are edited as their four columns (kind, referenced id, external number,
sound); validation (``orchestrator.tenant_doc``) refuses references outside the tenant.
SIP passwords are generated on create and never listed, shown or exported; a new one is
set from the employee's page and shown once (``admin.sip_password``). Accounts are in
``admin.accounts``, voicemail messages in ``admin.voicemail``.
"""
from __future__ import annotations

from typing import Any

from flask_admin.contrib.sqla.filters import FilterEqual
from sqlalchemy import false, select, update
from sqlalchemy.orm import scoped_session
from wtforms.fields import DateField
from wtforms.validators import InputRequired, ValidationError

from admin.departments import STRATEGY_CHOICES, grouped_rules, strategy_name
from admin.history import CallRecordView, local_time  # noqa: F401  (call history: its own module)
from admin.schedules import WeekHoursField, intervals_of, rows_from_intervals, week_view
from admin.scoping import (
    ALL_ROLES,
    ReadOnlyTenantView,
    ScopedChoiceFilter,
    SecureView,
    TenantScopedView,
    ajax_picker,
    ajax_picker_args,
    scoped_picker,
)
from admin.sip_password import SipPasswordAction
from admin.targets import TargetPickers, target_choices, target_form_args, target_formatter, target_overrides
from orchestrator.db.accounts import AdminRole, AdminUser
from orchestrator.db.history import MissedOffer
from orchestrator.db.models import (
    CallerRule,
    Department,
    DepartmentMember,
    Employee,
    PhoneNumber,
    Schedule,
    ScheduleException,
    ScheduleInterval,
    Tenant,
    VoiceMenu,
    VoiceMenuOption,
    VoicemailBox,
    VoicemailBoxOwner,
    split_lines,
)
from orchestrator.tenant_doc import rules



class TenantView(SecureView):
    operator_only = True
    column_list = ("id", "name", "sip_domain", "timezone", "enabled", "max_concurrent_calls", "routing_version")
    column_filters = ("enabled", "timezone")
    column_searchable_list = ("name", "sip_domain")
    form_columns = ("name", "sip_domain", "timezone", "enabled", "max_concurrent_calls", "forward_caller_id")
    form_choices = {"forward_caller_id": [("caller", "the caller's number"), ("number", "the company number that was called")]}
    form_args = {"forward_caller_id": {"label": "Forwarded calls (external targets, mobiles) show"}}

    def on_model_change(self, form: Any, model: Tenant, is_created: bool) -> None:
        for field, problem in (("sip_domain", rules.check_domain(model.sip_domain or "")),
                               ("timezone", rules.check_timezone(model.timezone or ""))):
            if problem:
                getattr(form, field).errors = list(getattr(form, field).errors) + [problem]
                raise ValidationError(problem)
        if not is_created and not model.enabled:
            # Suspended: its accounts' sessions end (and stay ended if it is enabled again).
            self.session.execute(update(AdminUser).where(AdminUser.tenant_id == model.id)
                                 .values(session_version=AdminUser.session_version + 1))


class EmployeeView(SipPasswordAction, TenantScopedView):
    edit_template = "pbx/employee_edit.html"
    details_template = "pbx/employee_details.html"
    column_list = ("tenant", "extension", "name", "email", "role", "mobile", "forward_to_mobile_after", "logged_in")
    column_filters = ("extension", "name", "role", "logged_in")
    column_searchable_list = ("name", "extension", "email")
    column_default_sort = "extension"
    column_exclude_list = ("sip_password",)
    column_details_exclude_list = ("sip_password",)
    form_columns = ("tenant", "name", "extension", "email", "role", "mobile", "forward_to_mobile_after",
                    "ring_seconds", "outbound_caller_id", "logged_in", "voicemail_box")
    field_map = {"voicemail": "voicemail_box"}
    can_export = False

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.form_args = {"voicemail_box": ajax_picker_args()}
        self.form_ajax_refs = {"voicemail_box": ajax_picker(db, VoicemailBox, ["name", "extension"])}
        super().__init__(Employee, db, **kw)

    def on_model_change(self, form: Any, model: Employee, is_created: bool) -> None:
        self.normalise_numbers(form, model, self._tenant_id(model))
        caller_id = model.outbound_caller_id
        if caller_id:
            tenant_id = self._tenant_id(model)
            with self.session.no_autoflush:  # the new row has no tenant yet
                owned = self.session.scalars(select(PhoneNumber.e164).where(PhoneNumber.tenant_id == tenant_id)).all()
            if caller_id not in owned and not rules.check_e164(caller_id):
                problem = ("outbound caller id %s is not a number of this tenant; use one of: %s"
                           % (caller_id, ", ".join(sorted(owned)) or "(the tenant has no numbers yet)"))
                form.outbound_caller_id.errors = list(form.outbound_caller_id.errors) + [problem]
                raise ValidationError(problem)
        super().on_model_change(form, model, is_created)


class DepartmentView(TargetPickers, TenantScopedView):
    """Grouped form (``admin.departments``): who, how they ring, when nobody answers,
    queue and callback; strategies in words."""

    column_list = ("tenant", "extension", "name", "strategy", "ring_seconds", "no_answer_timeout", "no_answer_kind")
    column_filters = ("extension", "name", "strategy")
    column_searchable_list = ("name", "extension")
    column_default_sort = "extension"
    form_columns = ("tenant", "name", "extension", "strategy", "ring_seconds", "no_answer_timeout",
                    "no_answer_kind", "no_answer_ref_id", "no_answer_number", "no_answer_sound", "wrapup_seconds",
                    "pause_after_missed", "stats_window_days", "queue_music", "queue_announcement", "queue_announce_position",
                    "queue_announce_every", "queue_max_wait",
                    "queue_max_length", "queue_callback_allowed", "queue_callback_key", "queue_callback_apology",
                    "queue_callback_prompt", "queue_callback_attempts", "queue_callback_retry_delay", "queue_callback_box",
                    "outbound_caller_id",
                    "members")
    form_choices = {**target_choices("no_answer"), "strategy": STRATEGY_CHOICES}
    inline_unique = {"members": ("employee", "%s is already a member: remove one of the two rows.")}
    form_overrides = target_overrides("no_answer")
    column_formatters = {"no_answer_kind": target_formatter("no_answer"),
                         "strategy": lambda v, c, m, n: strategy_name(m.strategy)}
    column_labels = {"no_answer_kind": "When nobody answers", "strategy": "How they ring",
                     "ring_seconds": "Rings each member for (seconds)", "wrapup_seconds": "Wrap-up after a call (seconds)",
                     "pause_after_missed": "Pause a member after this many missed calls in a row (0: never)",
                     "stats_window_days": "Statistics window for least talk time / fewest calls (days)",
                     "no_answer_timeout": "Nobody answered after (seconds)"}
    field_map = {"queue": "queue_max_wait", "queue.callback_voicemail": "queue_callback_box"}

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.form_args = {**target_form_args("no_answer", "No answer"), "outbound_caller_id": {
            "label": "Outbound caller ID (members without their own; one of the company's numbers)"},
            "queue_announce_every": {"label": "Queue: seconds of music between announcements (5-600)"},
            "queue_callback_apology": {"label": "Callback: apology when no member answered in time (sound; "
                                                "default ivr/ivr-not_available.wav)"},
            "queue_callback_prompt": {"label": "Callback: what the client hears on answering (sound; "
                                               "default ivr/ivr-thank_you.wav)"},
            "queue_callback_attempts": {"label": "Callback: attempts to reach the client (1-10)"},
            "queue_callback_retry_delay": {"label": "Callback: seconds between attempts to reach the client (0-3600)"},
            "queue_callback_box": {**ajax_picker_args(), "label": "Callback: voicemail box of an expired callback "
                                                                  "(empty: the no-answer target's box)"}}
        self.form_ajax_refs = {"queue_callback_box": ajax_picker(db, VoicemailBox, ["name", "extension"])}
        # Members are picked by a search (AJAX), never as one <option> per employee per
        # member row: 700 members would otherwise render 490,000 options.
        self.inline_models = [(DepartmentMember, {
            "form_columns": ("id", "employee", "order", "weight", "escalation_offset"),
            "form_args": {"employee": ajax_picker_args()},
            "form_ajax_refs": {"employee": ajax_picker(db, Employee, ["extension", "name"])},
        })]
        self.form_rules = grouped_rules(self.form_columns)
        super().__init__(Department, db, **kw)


def number_in_use(view: TenantScopedView, form: Any, field: Any) -> str:
    """Why a number cannot be added: whose it is, as far as this user may know."""
    owner = view.session.scalar(select(PhoneNumber.tenant_id).where(PhoneNumber.e164 == field.data))
    if view.user.is_operator:
        name = view.session.scalar(select(Tenant.name).where(Tenant.id == owner))
        return "This number is already in use by tenant %s." % name
    if owner == view.user.tenant_id:
        return "This number is already in use: it is already one of this company's numbers."
    return ("This number is already in use by another customer. Check the digits, or ask your operator "
            "if the number should be yours.")


class PhoneNumberView(TargetPickers, TenantScopedView):
    unique_messages = {"e164": number_in_use}
    column_list = ("tenant", "e164", "mode", "work_kind", "after_hours_kind", "schedule")
    column_labels = {"work_kind": "Work hours", "after_hours_kind": "After hours", "e164": "Number"}
    column_filters = ("e164", "mode")
    column_searchable_list = ("e164",)
    column_default_sort = "e164"
    form_columns = ("tenant", "e164", "dial_code", "mode", "schedule", "work_kind", "work_ref_id", "work_number", "work_sound",
                    "after_hours_kind", "after_hours_ref_id", "after_hours_number", "after_hours_sound")
    form_choices = target_choices("work", "after_hours")
    form_overrides = target_overrides("work", "after_hours")
    column_formatters = {"work_kind": target_formatter("work"), "after_hours_kind": target_formatter("after_hours")}
    field_map = {"number": "e164"}

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.form_args = {**target_form_args("work", "Work hours"), **target_form_args("after_hours", "After hours"),
                          "dial_code": {"label": "Dial code (employees call out with this number by dialling *7<code>*<number>)"},
                          # the blank choice's text: Flask-Admin shows "__None" without one
                          "schedule": {**scoped_picker(db, Schedule),
                                       "blank_text": "(no schedule of its own: the company schedule)"}}
        super().__init__(PhoneNumber, db, **kw)

    def on_model_change(self, form: Any, model: PhoneNumber, is_created: bool) -> None:
        self.normalise_numbers(form, model, self._tenant_id(model))
        with self.session.no_autoflush:  # the new row has no tenant yet
            taken = self.session.query(PhoneNumber).filter(PhoneNumber.e164 == model.e164, PhoneNumber.id != model.id)
            in_use = bool(model.e164) and self.session.query(taken.exists()).scalar()
        if in_use:
            form.e164.errors = list(form.e164.errors) + ["number %s is already in use" % model.e164]
            raise ValidationError("number %s is already in use (by this or another tenant)" % model.e164)
        super().on_model_change(form, model, is_created)


class ScheduleView(TenantScopedView):
    """Opening hours as rows of weekday checkboxes and from-to times (``admin.schedules``),
    holidays and special days with the browser's date picker, a week view on the page."""

    column_list = ("tenant", "name", "is_default")
    column_filters = ("name", "is_default")
    column_labels = {"is_default": "Default (numbers without a schedule of their own)"}
    form_columns = ("tenant", "name", "is_default", "hours", "exceptions")
    form_extra_fields = {"hours": WeekHoursField("Opening hours")}
    field_map = {"default": "is_default", "intervals": "hours"}
    inline_unique = {"exceptions": ("day", "%s is already a special day: keep one row per date.")}
    details_template = "pbx/schedule_details.html"
    edit_template = "pbx/schedule_edit.html"
    inline_models = [
        # A native date input (type="date"): typing a date keeps it as typed, unlike the
        # daterangepicker widget, which re-parsed each keystroke.
        (ScheduleException, {"form_columns": ("id", "day", "name", "closed", "intervals"),
                             "form_overrides": {"day": DateField},
                             "form_args": {"day": {"label": "Date", "validators": [InputRequired(
                                 "Pick the date (or type it as YYYY-MM-DD).")]},
                                           "name": {"label": "What (e.g. New Year)"},
                                           "closed": {"label": "Closed all day"},
                                           "intervals": {"label": "Otherwise open, e.g. 10:00-14:00"}}}),
    ]

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        super().__init__(Schedule, db, **kw)

    def _timezone(self, model: Any = None) -> str:
        tenant_id = getattr(model, "tenant_id", None) or self.user.tenant_id
        zone = self.session.scalar(select(Tenant.timezone).where(Tenant.id == tenant_id)) if tenant_id else None
        return zone or "the company's time zone"

    def _describe_hours(self, form: Any, model: Any = None) -> Any:
        if hasattr(form, "hours"):
            form.hours.description = (
                "Times in %s. Tick the days a row applies to; a break is a second row (09:00-13:00 and "
                "14:00-18:00). A row ending earlier than it starts ends the next morning (22:00 to 06:00)."
                % self._timezone(model))
        return form

    def create_form(self, obj: Any = None) -> Any:
        return self._describe_hours(super().create_form(obj))

    def edit_form(self, obj: Any = None) -> Any:
        form = super().edit_form(obj)
        if obj is not None and not form.hours.typed:
            form.hours.set_rows(rows_from_intervals(obj.intervals))
        return self._describe_hours(form, obj)

    def on_model_change(self, form: Any, model: Schedule, is_created: bool) -> None:
        wanted = intervals_of(form.hours.data)
        with self.session.no_autoflush:  # loading the intervals must not write the inline rows yet
            if [(i.weekday, i.start_minute, i.end_minute) for i in model.intervals] != wanted:
                tenant_id = self._tenant_id(model)
                model.intervals = [ScheduleInterval(tenant_id=tenant_id, weekday=d, start_minute=s, end_minute=e)
                                   for d, s, e in wanted]
        super().on_model_change(form, model, is_created)

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if isinstance(model, Schedule):
            kwargs.update(week=week_view(model.intervals), exceptions=model.exceptions,
                          timezone=self._timezone(model))
        return super().render(template, **kwargs)


class VoiceMenuView(TargetPickers, TenantScopedView):
    column_list = ("tenant", "name", "extension", "timeout_seconds", "default_kind", "direct_dial")
    column_filters = ("name", "extension")
    form_columns = ("tenant", "name", "extension", "greeting", "timeout_seconds", "default_kind", "default_ref_id",
                    "default_number", "default_sound", "invalid_sound", "max_invalid", "direct_dial", "back_digit",
                    "options")
    form_choices = target_choices("default")
    inline_unique = {"options": ("digit", "Key %s is already used by another option: each key leads to one place only.")}
    form_overrides = target_overrides("default")
    column_formatters = {"default_kind": target_formatter("default")}
    inline_models = [(VoiceMenuOption, {
        "form_columns": ("id", "digit", "target_kind", "target_ref_id", "target_number", "target_sound"),
        "form_choices": target_choices("target"),
        "form_overrides": target_overrides("target"),
        "form_args": target_form_args("target", "Target"),
    })]

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.form_args = {**target_form_args("default", "Default (no key pressed)"), "back_digit": {
            "label": "Back digit (returns to the menu the caller came from), e.g. *"}}
        super().__init__(VoiceMenu, db, **kw)


class VoicemailBoxView(TenantScopedView):
    column_list = ("tenant", "name", "extension", "email", "max_message_seconds")
    column_filters = ("name", "extension")
    form_columns = ("tenant", "name", "extension", "greeting", "email", "max_message_seconds", "owners")
    inline_unique = {"owners": ("employee", "%s is already an owner: remove one of the two rows.")}

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.inline_models = [(VoicemailBoxOwner, {
            "form_columns": ("id", "employee"),
            "form_args": {"employee": ajax_picker_args()},
            "form_ajax_refs": {"employee": ajax_picker(db, Employee, ["extension", "name"])},
        })]
        super().__init__(VoicemailBox, db, **kw)


MISSED_RESULT_WORDS = {"no_answer": "no answer", "rejected": "rejected", "busy": "busy",
                       "unregistered": "phone not registered"}


def _own_employee_only(user: Any) -> bool:
    return user.role is AdminRole.RESTRICTED


def member_choices(view: TenantScopedView) -> list[tuple[int, str]]:
    """The members a user may filter missed offers by: the tenant's employees (a
    restricted user: only themself; the operator: everyone, with the tenant's name)."""
    user = view.user
    query = (select(Employee.id, Employee.extension, Employee.name, Tenant.name)
             .join(Tenant, Tenant.id == Employee.tenant_id).order_by(Tenant.name, Employee.extension))
    if not user.is_operator:
        query = query.where(Employee.tenant_id == user.tenant_id)
    if _own_employee_only(user):
        query = query.where(Employee.id == user.employee_id)
    return [(i, "%s %s" % (ext, name) + (" (%s)" % tenant if user.is_operator else ""))
            for i, ext, name, tenant in view.session.execute(query)]


def department_choices(view: TenantScopedView) -> list[tuple[int, str]]:
    """The departments a user may filter missed offers by (a restricted user: their own)."""
    user = view.user
    query = (select(Department.id, Department.extension, Department.name, Tenant.name)
             .join(Tenant, Tenant.id == Department.tenant_id).order_by(Tenant.name, Department.extension))
    if not user.is_operator:
        query = query.where(Department.tenant_id == user.tenant_id)
    if _own_employee_only(user):
        query = query.where(Department.id.in_(select(DepartmentMember.department_id).where(
            DepartmentMember.employee_id == user.employee_id, DepartmentMember.tenant_id == user.tenant_id)))
    return [(i, "%s %s" % (ext, name) + (" (%s)" % tenant if user.is_operator else ""))
            for i, ext, name, tenant in view.session.execute(query)]


def _same_tenant_label(view: Any, model: Any, row_model: type, row_id: int | None) -> str:
    if row_id is None:
        return "(deleted)"
    row = view.session.get(row_model, row_id)  # the session's identity map: one query per row shown
    if row is None or row.tenant_id != model.tenant_id:
        return "#%d" % row_id
    return "%s %s" % (row.extension, row.name)


class MissedOfferView(ReadOnlyTenantView):
    """A department member was offered a call and did not take it: the roles that see
    call history (operators all, tenant admins and users their company's, restricted
    users their own missed offers)."""

    roles = ALL_ROLES
    column_list = ("tenant_id", "offered_at", "employee_id", "department_id", "result", "rang_ms", "paused",
                   "call_uuid")
    column_labels = {"tenant_id": "Company", "offered_at": "Offered at (company time)", "employee_id": "Member",
                     "department_id": "Department", "rang_ms": "Rang", "paused": "Paused the member",
                     "call_uuid": "Call"}
    column_filters = (
        ScopedChoiceFilter(MissedOffer.employee_id, "Member", member_choices),
        ScopedChoiceFilter(MissedOffer.department_id, "Department", department_choices),
        FilterEqual(MissedOffer.result, "Result", options=list(MISSED_RESULT_WORDS.items())),
        "offered_at",
    )
    column_searchable_list = ("call_uuid",)
    column_default_sort = ("offered_at", True)
    column_formatters = {
        "employee_id": lambda v, c, m, n: _same_tenant_label(v, m, Employee, m.employee_id),
        "department_id": lambda v, c, m, n: _same_tenant_label(v, m, Department, m.department_id),
        "result": lambda v, c, m, n: MISSED_RESULT_WORDS.get(m.result, m.result),
        "rang_ms": lambda v, c, m, n: "%.1f s" % (m.rang_ms / 1000),
        "offered_at": lambda v, c, m, n: local_time(v.session, m, m.offered_at),  # the company's time
        "tenant_id": lambda v, c, m, n: getattr(v.session.get(Tenant, m.tenant_id), "name", ""),
    }

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        super().__init__(MissedOffer, db, **kw)

    def row_scope(self, query: Any) -> Any:
        if not _own_employee_only(self.user):
            return query
        if self.user.employee_id is None:
            return query.filter(false())
        return query.filter(MissedOffer.employee_id == self.user.employee_id)


class CallerRuleView(TargetPickers, TenantScopedView):
    """Caller-based rules, tried in ``position`` order before a number's schedule (the
    tenant document's ``caller_rules``). Values and numbers are one a line; the target is
    edited as its four columns like every route target."""

    column_list = ("tenant", "position", "name", "match_kind", "match_values", "negate", "block", "numbers",
                   "target_kind")
    column_labels = {"position": "Order", "match_kind": "Match", "match_values": "Values", "negate": "Not",
                     "numbers": "Only for numbers", "target_kind": "Target"}
    column_formatters = {"target_kind": target_formatter("target")}
    column_filters = ("name", "match_kind", "block")
    column_searchable_list = ("name", "match_values")
    column_default_sort = "position"
    form_columns = ("tenant", "name", "position", "match_kind", "match_values", "negate", "block", "numbers", "days",
                    "crm_url", "crm_timeout_ms", "target_kind", "target_ref_id", "target_number", "target_sound")
    form_choices = target_choices("target")
    form_overrides = target_overrides("target")
    field_map = {"match": "match_kind", "values": "match_values", "crm": "crm_url"}

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.form_args = {
            **target_form_args("target", "Target (last agent / CRM: fallback; block: announcement)"),
            "position": {"label": "Order (lower is tried first)"},
            "match_kind": {"label": "Match by"},
            "match_values": {"label": "Values, one a line (country codes RU, DE; places as pbx-explain names "
                                      "them, e.g. St Petersburg; prefixes +7812; E.164 numbers)"},
            "negate": {"label": "Match callers NOT matching the values"},
            "block": {"label": "Block: refuse matching callers (CALL_REJECTED)"},
            "numbers": {"label": "Only for calls to these of the tenant's numbers, one a line (empty: all)"},
            "days": {"label": "Last agent: days of call history"},
            "crm_url": {"label": "CRM: endpoint URL (see docs/operations.md for the contract)"},
            "crm_timeout_ms": {"label": "CRM: timeout, ms (100-1500)"},
        }
        super().__init__(CallerRule, db, **kw)

    def before_validation(self, model: CallerRule, is_created: bool) -> None:
        for column in ("match_values", "numbers"):
            setattr(model, column, "\n".join(split_lines(getattr(model, column))))
        if model.crm_url is not None and not model.crm_url.strip():
            model.crm_url = None
