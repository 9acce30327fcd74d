"""Accounts of the admin panel: operators manage every account; a tenant admin manages
their own company's accounts (tenant admin, user, restricted; never an operator).

Passwords are set through a form field (hashed with scrypt, never shown) and an account
is disabled rather than deleted when someone leaves (``admin.auth``: the hash kept behind
a ``!``). Nobody changes their own role or disables or deletes their own account, so a
company always keeps the admin who is editing it.
"""
from __future__ import annotations

import re
from typing import Any

from flask import flash
from flask_admin.actions import action
from sqlalchemy import inspect
from sqlalchemy.orm import scoped_session
from werkzeug.security import generate_password_hash
from wtforms import BooleanField, PasswordField
from wtforms.validators import ValidationError

from admin.auth import current_user, is_disabled, new_session_version, remember_session_version, with_disabled
from admin.scoping import TenantScopedView, ajax_picker, ajax_picker_args
from orchestrator.db.accounts import AdminRole, AdminUser
from orchestrator.db.models import Employee

MIN_PASSWORD = 10
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{3,100}$")
TENANT_ROLES = (AdminRole.TENANT_ADMIN, AdminRole.USER, AdminRole.RESTRICTED)
ROLE_WORDS = {AdminRole.OPERATOR: "operator (every tenant)", AdminRole.TENANT_ADMIN: "tenant admin",
              AdminRole.USER: "user (company's calls)", AdminRole.RESTRICTED: "restricted (own calls)"}


def username_taken(view: Any, form: Any, field: Any) -> str:
    return "The username %s is taken; choose another one." % field.data


def employee_label(employee: Employee) -> str:
    """Picker label: operators see every tenant's employees, so they get the company too."""
    user = current_user()
    if user is not None and user.is_operator:
        return "%s %s (%s)" % (employee.extension, employee.name, employee.tenant.name)
    return "%s %s" % (employee.extension, employee.name)


def _fail(form: Any, field: str, message: str) -> None:
    """Put ``message`` next to ``field`` (when the form has it) and refuse the save."""
    target = getattr(form, field, None)
    if target is not None:
        target.errors = list(target.errors) + [message]
    raise ValidationError(message)


def _changed(model: AdminUser, attribute: str) -> bool:
    return bool(inspect(model).attrs[attribute].history.deleted)


class AccountView(TenantScopedView):
    column_list = ("username", "role", "tenant", "employee", "status")
    column_details_list = column_list
    column_labels = {"status": "Status"}
    column_filters = ("role",)
    column_searchable_list = ("username",)
    column_sortable_list = ("username", "role")
    column_default_sort = "username"
    column_formatters = {
        "role": lambda v, c, m, n: ROLE_WORDS.get(AdminRole(m.role), m.role),
        "status": lambda v, c, m, n: "disabled" if is_disabled(m.password_hash) else "active",
    }
    column_formatters_detail = column_formatters
    form_columns = ("username", "role", "tenant", "employee", "new_password", "disabled")
    form_extra_fields = {
        "new_password": PasswordField("Password (%d+ characters; leave empty to keep the current one)"
                                      % MIN_PASSWORD),
        "disabled": BooleanField("Disabled (cannot log in; the password is kept)"),
    }
    unique_messages = {"username": username_taken}
    can_export = False

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.form_args = {
            "employee": ajax_picker_args("Employee (their profile; a restricted account sees this employee's calls)"),
            "tenant": {"blank_text": "(no company: operator accounts)"},  # Flask-Admin's default shows "__None"
        }
        self.form_ajax_refs = {"employee": ajax_picker(db, Employee, ["extension", "name"], employee_label)}
        super().__init__(AdminUser, db, **kw)

    # forms ------------------------------------------------------------------------------

    def _shape(self, form: Any, obj: AdminUser | None) -> Any:
        if not self.user.is_operator:
            form.role.choices = [(r.value, ROLE_WORDS[r]) for r in TENANT_ROLES]
        else:
            form.role.choices = [(r.value, ROLE_WORDS[r]) for r in AdminRole]
        if obj is not None and obj.id == self.user.id:  # one's own account: password only
            del form.role
            del form.disabled
        return form

    def create_form(self, obj: Any = None) -> Any:
        return self._shape(super().create_form(obj), None)

    def edit_form(self, obj: Any = None) -> Any:
        return self._shape(super().edit_form(obj), obj)

    def on_form_prefill(self, form: Any, id: Any) -> None:
        if getattr(form, "disabled", None) is not None:  # not on one's own account
            form.disabled.data = is_disabled(self.get_one(id).password_hash)

    # saves -------------------------------------------------------------------------------

    def on_model_change(self, form: Any, model: AdminUser, is_created: bool) -> None:
        user = self.user
        model.username = (model.username or "").strip()
        if not USERNAME.match(model.username):
            _fail(form, "username", "A username is 3 to 100 letters, digits or . _ @ -.")
        if not is_created and model.id == user.id and (_changed(model, "role") or _changed(model, "tenant_id")):
            raise ValidationError("You cannot change your own role; ask another administrator.")
        role = AdminRole(model.role)
        model.role = role
        if user.is_operator:
            tenant_id = model.tenant.id if model.tenant is not None else None
            if role is AdminRole.OPERATOR and tenant_id is not None:
                _fail(form, "tenant", "Operator accounts belong to no tenant: clear the tenant.")
            if role is not AdminRole.OPERATOR and tenant_id is None:
                _fail(form, "tenant", "Choose the company (tenant) this account belongs to.")
        else:
            if role not in TENANT_ROLES:
                _fail(form, "role", "Choose tenant admin, user or restricted.")
            if not is_created and model.tenant_id != user.tenant_id:
                raise ValidationError("An account cannot move to another company.")
            tenant_id = user.tenant_id
            model.tenant_id = tenant_id
        employee = model.employee
        if employee is not None and (role is AdminRole.OPERATOR or employee.tenant_id != tenant_id):
            _fail(form, "employee", "Link an employee of the account's own company (operators: none).")
        if role is AdminRole.RESTRICTED and employee is None:
            _fail(form, "employee", "A restricted account sees only its employee's calls: choose the employee.")
        self._apply_password(form, model, is_created)

    def _apply_password(self, form: Any, model: AdminUser, is_created: bool) -> None:
        password = form.new_password.data or ""
        if password and len(password) < MIN_PASSWORD:
            _fail(form, "new_password", "Use a password of %d or more characters." % MIN_PASSWORD)
        if not password and is_created:
            _fail(form, "new_password", "Give the new account a password (%d+ characters)." % MIN_PASSWORD)
        current = model.password_hash or ""
        own = getattr(form, "disabled", None) is None  # one's own account: stays as it is
        disabled = is_disabled(current) if own else form.disabled.data
        if password:
            current = generate_password_hash(password)
        before = model.password_hash
        model.password_hash = with_disabled(current, bool(disabled))
        if not is_created and model.password_hash != before:  # new password, disabled or enabled
            new_session_version(model)  # the account's open sessions end (one's own: kept, below)

    def after_model_change(self, form: Any, model: AdminUser, is_created: bool) -> None:
        if model.id == self.user.id:  # one's own new password: this session stays signed in
            remember_session_version(model.session_version)

    def on_model_delete(self, model: AdminUser) -> None:
        if model.id == self.user.id:
            raise ValidationError("You cannot delete your own account.")
        if not self.user.is_operator and model.tenant_id != self.user.tenant_id:
            raise ValidationError("Not an account of your company.")

    # list actions --------------------------------------------------------------------------

    @action("disable", "Disable", "Disable the selected accounts? They cannot log in until enabled again.")
    def action_disable(self, ids: Any) -> None:
        self._set_disabled(ids, True)

    @action("enable", "Enable", "Enable the selected accounts? They log in with their old passwords.")
    def action_enable(self, ids: Any) -> None:
        self._set_disabled(ids, False)

    def _set_disabled(self, ids: Any, disabled: bool) -> None:
        wanted = [int(i) for i in ids if str(i).isdigit()]
        rows = list(self.get_query().filter(AdminUser.id.in_(wanted))) if wanted else []
        changed = 0
        for row in rows:
            if row.id == self.user.id:
                flash("You cannot disable your own account; it was left as it is.", "error")
                continue
            if is_disabled(row.password_hash) != disabled:
                row.password_hash = with_disabled(row.password_hash, disabled)
                new_session_version(row)
                changed += 1
        self.session.commit()
        flash("%d account%s %s." % (changed, "" if changed == 1 else "s", "disabled" if disabled else "enabled"),
              "success")
