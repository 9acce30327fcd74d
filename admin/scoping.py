"""The shared base of every admin ModelView: a tenant admin sees and edits only their
tenant's rows (operators see all), related pickers offer only the tenant's rows, and
every change runs the tenant-document rules (``orchestrator.tenant_doc``) before commit.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

from flask import abort, redirect, request, url_for
from flask_admin.contrib.sqla import ModelView
from flask_wtf import FlaskForm
from sqlalchemy.orm import scoped_session
from werkzeug.wrappers import Response
from wtforms.validators import ValidationError

from admin.auth import CurrentUser, current_user
from orchestrator.errors import TenantDataError
from orchestrator.tenant_doc import check_tenant, errors_for


def scoped_choices(db: scoped_session, model: type) -> Callable[[], Any]:
    """A query factory for related pickers: the current tenant's rows only."""

    def factory() -> Any:
        query: Any = db.query(model)
        user = current_user()
        if user is not None and not user.is_operator and hasattr(model, "tenant_id"):
            query = query.filter(model.tenant_id == user.tenant_id)  # type: ignore[attr-defined]
        return query

    return factory


class SecureView(ModelView):
    """Logged-in operators and tenant admins only; CSRF-protected forms (Flask-WTF)."""

    form_base_class = FlaskForm
    operator_only = False
    page_size = 50

    def is_accessible(self) -> bool:
        user = current_user()
        return user is not None and user.can_administer and (user.is_operator or not self.operator_only)

    def scaffold_list_columns(self) -> list[Any]:
        # Route targets are composites over four columns; the columns themselves are
        # listed/edited, the composite is skipped (Flask-Admin warns about it otherwise).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Can not convert multiple-column properties")
            return super().scaffold_list_columns()

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Response:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403)


class TenantScopedView(SecureView):
    """Rows with a ``tenant_id``: scoped lists, counts, single rows, pickers and saves.

    ``field_map`` maps a tenant-document field (``number``) to the form field that
    shows its errors (``e164``); targets map ``no_answer`` -> ``no_answer_ref_id``.
    """

    field_map: dict[str, str] = {}
    can_view_details = True

    @property
    def user(self) -> CurrentUser:
        user = current_user()
        assert user is not None  # is_accessible ran first
        return user

    def _scoped(self, query: Any) -> Any:
        if self.user.is_operator:
            return query
        return query.filter(self.model.tenant_id == self.user.tenant_id)

    def get_query(self) -> Any:
        return self._scoped(super().get_query())

    def get_count_query(self) -> Any:
        return self._scoped(super().get_count_query())

    def get_one(self, id: Any) -> Any:
        obj = super().get_one(id)
        if obj is None:
            abort(404)
        if not self.user.is_operator and obj.tenant_id != self.user.tenant_id:
            abort(404)  # another tenant's row does not exist for this user
        return obj

    def _strip_tenant_field(self, form: Any) -> Any:
        if not self.user.is_operator and hasattr(form, "tenant"):
            del form.tenant
        return form

    def create_form(self, obj: Any = None) -> Any:
        return self._strip_tenant_field(super().create_form(obj))

    def edit_form(self, obj: Any = None) -> Any:
        return self._strip_tenant_field(super().edit_form(obj))

    def _tenant_id(self, model: Any) -> int:
        if not self.user.is_operator:
            return self.user.tenant_id  # type: ignore[return-value]
        tenant = getattr(model, "tenant", None)
        tenant_id = tenant.id if tenant is not None else model.tenant_id
        if tenant_id is None:
            raise ValidationError("Choose the tenant.")
        return tenant_id

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        tenant_id = self._tenant_id(model)
        if not is_created and model.tenant_id is not None and model.tenant_id != tenant_id:
            raise ValidationError("A row cannot move to another tenant.")
        model.tenant_id = tenant_id
        self.before_validation(model, is_created)
        problems = errors_for(self.session, tenant_id, model)
        if problems:
            messages = []
            for doc_field, texts in problems.items():
                field = getattr(form, self._form_field(form, doc_field), None)
                if field is not None:
                    field.errors = list(field.errors) + texts
                messages += ["%s: %s" % (doc_field, t) for t in texts]
            raise ValidationError("; ".join(messages))

    def _form_field(self, form: Any, doc_field: str) -> str:
        name = self.field_map.get(doc_field, doc_field)
        for candidate in (name, name + "_ref_id", name + "_kind"):
            if hasattr(form, candidate):
                return candidate
        return name

    def before_validation(self, model: Any, is_created: bool) -> None:
        """Hook for views (e.g. fill generated values)."""

    def on_model_delete(self, model: Any) -> None:
        """Refuse deleting a row that other rows still route to."""
        if not self.user.is_operator and model.tenant_id != self.user.tenant_id:
            abort(404)
        before = {(e.field, e.message) for e in check_tenant(self.session, model.tenant_id)}
        self.session.delete(model)
        after = [e for e in check_tenant(self.session, model.tenant_id) if (e.field, e.message) not in before]
        if after:
            raise ValidationError("Still in use: " + "; ".join("%s: %s" % (e.field, e.message) for e in after))

    def handle_view_exception(self, exc: Exception) -> bool:
        if isinstance(exc, TenantDataError):
            from flask import flash

            flash(str(exc), "error")
            return True
        return super().handle_view_exception(exc)

