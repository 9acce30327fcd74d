"""My profile: every tenant account edits its linked employee's name, e-mail, mobile and
forwarding (the tenant-document rules check the values; the change takes effect on the
next call like any routing change).

Every signed-in account (operators included) changes its own password here
(``/admin/profile/password``): the current password, then the new one twice, at least
``admin.accounts.MIN_PASSWORD`` characters, hashed like every password (``admin.auth``).
The account's other sessions end (its session version is raised); this one stays signed
in. An operator or tenant admin resets someone else's password on the Accounts page."""
from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from flask_admin import BaseView, expose
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import scoped_session
from werkzeug.wrappers import Response
from werkzeug.security import generate_password_hash
from wtforms import IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, NumberRange, Optional

from admin.accounts import MIN_PASSWORD
from admin.auth import (
    CurrentUser,
    SignedInPage,
    current_user,
    is_disabled,
    new_session_version,
    password_matches,
    remember_session_version,
    with_disabled,
)
from orchestrator.db.accounts import AdminUser
from admin.wording import normalise_number, panel_message, tenant_region
from orchestrator.db.models import Employee, Tenant
from orchestrator.tenant_doc import errors_for


class ProfileForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Enter your name: it cannot be blank.")])
    email = StringField("E-mail", validators=[Optional()])
    mobile = StringField("Mobile (e.g. +79161234567 or 8 916 123-45-67)", validators=[Optional()])
    forward_to_mobile_after = IntegerField("Forward to mobile after (seconds; empty: never)",
                                           validators=[Optional(), NumberRange(min=0, max=600)])


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password",
                                     validators=[DataRequired("Enter your current password.")])
    new_password = PasswordField("New password (%d+ characters)" % MIN_PASSWORD,
                                 validators=[DataRequired("Enter the new password.")])
    repeat_password = PasswordField("New password again",
                                    validators=[DataRequired("Enter the new password a second time.")])


PROFILE_FIELDS = ("name", "email", "mobile", "forward_to_mobile_after")


class ProfileView(SignedInPage, BaseView):
    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.db = db
        super().__init__(**kw)

    def allowed(self, user: CurrentUser) -> bool:
        return True  # every account has a password; only tenant accounts have an employee

    def _employee(self, user: CurrentUser) -> Employee | None:
        if user.employee_id is None or user.tenant_id is None:
            return None
        return self.db.scalar(select(Employee).where(Employee.id == user.employee_id,
                                                     Employee.tenant_id == user.tenant_id))

    @expose("/", methods=("GET", "POST"))
    def index(self) -> str | Response:
        user = current_user()
        assert user is not None  # is_accessible ran first
        employee = self._employee(user)
        form = ProfileForm(obj=employee)
        form_errors: list[str] = []
        if employee is not None and user.tenant_id is not None and form.validate_on_submit():
            for name in PROFILE_FIELDS:
                value = getattr(form, name).data
                setattr(employee, name, value.strip() or None if isinstance(value, str) else value)
            employee.name = employee.name or ""
            region = tenant_region(self.db.scalar(select(Tenant.timezone).where(Tenant.id == user.tenant_id)))
            employee.mobile = form.mobile.data = normalise_number(employee.mobile, region)
            problems = errors_for(self.db(), user.tenant_id, employee)
            for doc_field, texts in problems.items():
                texts = [panel_message(t) for t in texts]
                field = getattr(form, doc_field, None)
                if field is not None and doc_field in PROFILE_FIELDS:
                    field.errors = list(field.errors) + texts
                else:
                    form_errors += ["%s: %s" % (doc_field, t) for t in texts]
            if problems:
                self.db.rollback()
            else:
                self.db.commit()
                return redirect(url_for(".index", saved=1))
        return self.render("pbx/profile.html", form=form, employee=employee, form_errors=form_errors,
                           saved=request.args.get("saved") == "1", operator=user.is_operator)

    @expose("/password", methods=("GET", "POST"))
    def password(self) -> str | Response:
        user = current_user()
        assert user is not None  # is_accessible ran first
        form = PasswordForm()
        if form.validate_on_submit():
            account = self.db.get(AdminUser, user.id)
            assert account is not None  # load_user found it for this request
            new = form.new_password.data or ""
            if not password_matches(account.password_hash, form.current_password.data or ""):
                form.current_password.errors = ["That is not your current password; try again."]
            elif len(new) < MIN_PASSWORD:
                form.new_password.errors = ["Use a password of %d or more characters." % MIN_PASSWORD]
            elif new != form.repeat_password.data:
                form.repeat_password.errors = ["The two new passwords differ; type the same one twice."]
            else:
                account.password_hash = with_disabled(generate_password_hash(new),
                                                      is_disabled(account.password_hash))
                version = new_session_version(account)  # the account's other sessions end
                self.db.commit()
                remember_session_version(version)  # this one stays signed in
                return redirect(url_for(".password", saved=1))
        return self.render("pbx/password.html", form=form, saved=request.args.get("saved") == "1")
