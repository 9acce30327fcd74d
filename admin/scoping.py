"""The shared base of every admin ModelView: a tenant admin sees and edits only their
tenant's rows (operators see all), related pickers offer only the tenant's rows, and
every change runs the tenant-document rules (``orchestrator.tenant_doc``) before commit.
"""
from __future__ import annotations

import enum
import logging
import warnings
from typing import Any, Callable

from flask import abort
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.ajax import QueryAjaxModelLoader
from flask_admin.contrib.sqla.filters import IntEqualFilter
from flask_admin.contrib.sqla.form import AdminModelConverter
from flask_admin.contrib.sqla.validators import Unique
from flask_admin.model.form import converts
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, scoped_session
from wtforms.validators import ValidationError

from admin.auth import CurrentUser, SignedInPage, current_user
from admin.wording import describe_path, integrity_message, normalise_number, panel_message, tenant_region
from orchestrator.db.accounts import AdminRole
from orchestrator.db.models import Tenant
from orchestrator.errors import TenantDataError
from orchestrator.tenant_doc import check_tenant, errors_for
from orchestrator.tenant_doc.exporter import tenant_document

log = logging.getLogger(__name__)


def scoped_choices(db: scoped_session, model: type) -> Callable[[], Any]:
    """A query factory for related pickers: the current tenant's rows only."""

    def factory() -> Any:
        query: Any = db.query(model)
        user = current_user()
        if user is not None and not user.is_operator and hasattr(model, "tenant_id"):
            query = query.filter(model.tenant_id == user.tenant_id)  # type: ignore[attr-defined]
        return query

    return factory


ADMIN_ROLES = frozenset({AdminRole.OPERATOR, AdminRole.TENANT_ADMIN})
ALL_ROLES = frozenset(AdminRole)


def picked_from_list(form: Any, field: Any) -> None:
    """A related picker whose submitted id is not among its choices (another tenant's
    row, a deleted one) would silently become "none": say so instead."""
    raw = getattr(field, "_formdata", None)
    if raw not in (None, "", "__None") and field.data is None:
        raise ValidationError("Not a valid choice: pick one of this tenant's rows from the list.")


def scoped_picker(db: scoped_session, model: type) -> dict[str, Any]:
    """``form_args`` of a related picker: the tenant's rows only, anything else refused."""
    return {"query_factory": scoped_choices(db, model), "validators": [picked_from_list]}


AJAX_PAGE_SIZE = 20  # the most rows one lookup answers, whatever ``limit`` the request asks for


class TenantAjaxLoader(QueryAjaxModelLoader):
    """A searched picker (Flask-Admin's ``form_ajax_refs``): the form renders only the
    chosen row, and the browser asks ``<view>/ajax/lookup/?name=...&query=...`` for at
    most ``AJAX_PAGE_SIZE`` matches. Lookups and submitted ids are scoped like
    ``scoped_choices``: a tenant admin never finds, nor can submit, another tenant's row
    (``get_one`` answers None for it, and ``picked_from_list`` says so)."""

    def __init__(self, name: str, db: scoped_session, model: type, fields: list[str],
                 label: Callable[[Any], str] | None = None) -> None:
        super().__init__(name, db, model, fields=fields, page_size=AJAX_PAGE_SIZE,
                         order_by=getattr(model, fields[0]), minimum_input_length=0)
        self.label = label or with_tenant_name

    def get_query(self) -> Any:
        return scoped_choices(self.session, self.model)()

    def get_one(self, pk: Any) -> Any:
        try:
            wanted = int(pk)
        except (TypeError, ValueError):
            return None
        with self.session.no_autoflush:
            return self.get_query().filter(self.model.id == wanted).one_or_none()  # type: ignore[attr-defined]

    def get_list(self, term: str, offset: int = 0, limit: int = AJAX_PAGE_SIZE) -> Any:
        limit = max(1, min(int(limit or AJAX_PAGE_SIZE), AJAX_PAGE_SIZE))
        return super().get_list((term or "")[:100], max(0, int(offset or 0)), limit)

    def format(self, model: Any) -> tuple[Any, str] | None:
        if model is None:
            return None
        return model.id, self.label(model)


def with_tenant_name(row: Any) -> str:
    """Picker label: operators see every tenant's rows, so they get the company too."""
    user = current_user()
    if user is not None and user.is_operator and getattr(row, "tenant", None) is not None:
        return "%s (%s)" % (row, row.tenant.name)
    return str(row)


def ajax_picker(db: scoped_session, model: type, fields: list[str], label: Callable[[Any], str] | None = None,
                name: str = "") -> TenantAjaxLoader:
    """A ``form_ajax_refs`` entry: the tenant's rows of ``model``, searched in ``fields``."""
    return TenantAjaxLoader(name or model.__tablename__, db, model, fields, label)  # type: ignore[attr-defined]


def ajax_picker_args(label: str | None = None) -> dict[str, Any]:
    """``form_args`` of an AJAX picker: anything not found in the tenant's rows refused."""
    args: dict[str, Any] = {"validators": [picked_from_list]}
    if label:
        args["label"] = label
    return args


class ScopedChoiceFilter(IntEqualFilter):
    """"Equals" on an id column, offered as a drop-down of ``choices(view)``: the rows the
    current user may see (e.g. the tenant's employees). Flask-Admin computes a filter's
    options once, at start, with nobody logged in; ``TenantScopedView`` asks for these on
    every request instead. A typed-in id of another tenant's row only narrows the
    (already scoped) list to nothing."""

    def __init__(self, column: Any, name: str, choices: Callable[[Any], list[tuple[Any, str]]]) -> None:
        super().__init__(column, name)
        self.choices = choices


class PanelForm(FlaskForm):
    """Flask-WTF's CSRF-protected form that remembers the row it edits (``_obj``), as
    Flask-Admin's own base form does: its ``Unique`` validator needs it, or every edit
    of a row with a unique column (a number's e164) fails with "Already exists."."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._obj = kwargs.get("obj")
        super().__init__(*args, **kwargs)


def _enum_value(value: Any) -> str:
    return value.value if isinstance(value, enum.Enum) else str(value)


class EnumValueConverter(AdminModelConverter):
    """Flask-Admin coerces an enum to its *name* (``SCHEDULE``) while our columns store
    and offer *values* (``schedule``): an edit form then shows the first choice instead
    of the row's, and saving silently changes it. Coerce to the value instead."""

    @converts("sqlalchemy.sql.sqltypes.Enum")
    def convert_enum(self, column: Any, field_args: Any, **extra: Any) -> Any:
        field = super().convert_enum(column, field_args, **extra)
        field.kwargs["coerce"] = _enum_value
        return field


class ExplainedUnique:
    """Flask-Admin's unique-column check with a message that says what is wrong and what
    to do (``explain(form, field)``) instead of its generic "Already exists."."""

    field_flags = {"unique": True}

    def __init__(self, check: Unique, explain: Callable[[Any, Any], str]) -> None:
        self.check = check
        self.explain = explain

    def __call__(self, form: Any, field: Any) -> None:
        try:
            self.check(form, field)
        except ValidationError:
            raise ValidationError(self.explain(form, field)) from None


class SecureView(SignedInPage, ModelView):
    """Logged-in accounts of ``roles`` only (operators and tenant admins unless a view
    says otherwise); CSRF-protected forms (Flask-WTF).

    ``unique_messages`` maps a unique column's form field to a function
    ``(view, form, field) -> message`` said when the value is taken."""

    form_base_class = PanelForm
    model_form_converter = EnumValueConverter
    operator_only = False
    roles: frozenset[AdminRole] = ADMIN_ROLES
    page_size = 50
    unique_messages: dict[str, Callable[[Any, Any, Any], str]] = {}

    def scaffold_form(self) -> Any:
        form_class = super().scaffold_form()
        for name, explain in self.unique_messages.items():
            unbound = getattr(form_class, name, None)
            if unbound is None:
                continue
            checks = unbound.kwargs.get("validators") or []
            unbound.kwargs["validators"] = [ExplainedUnique(c, self._explainer(explain)) if isinstance(c, Unique)
                                            else c for c in checks]
        return form_class

    def _explainer(self, explain: Callable[[Any, Any, Any], str]) -> Callable[[Any, Any], str]:
        def message(form: Any, field: Any) -> str:
            return explain(self, form, field)

        return message

    def _export_csv(self, return_url: Any) -> Any:
        """A CSV export answers with the file, never a page: an invalid filter value's
        message (flashed by Flask-Admin) would otherwise wait for the next page."""
        from flask import session

        before = len(session.get("_flashes", []))
        response = super()._export_csv(return_url)
        if len(session.get("_flashes", [])) > before:
            session["_flashes"] = session["_flashes"][:before]
        return response

    def handle_view_exception(self, exc: Exception) -> bool:
        """A refused write says which rule, in words (``admin.wording``), never SQL."""
        if isinstance(exc, IntegrityError):
            from flask import flash

            field, message = integrity_message(exc)
            log.info("admin_write_refused view=%s constraint_field=%s", self.endpoint, field or "-")
            flash(message, "error")
            return True
        return super().handle_view_exception(exc)

    def allowed(self, user: CurrentUser) -> bool:
        if user.role not in self.roles:
            return False
        return user.is_operator or not self.operator_only

    def scaffold_list_columns(self) -> list[Any]:
        # Route targets are composites over four columns; the columns themselves are
        # listed/edited, the composite is skipped (Flask-Admin warns about it otherwise).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Can not convert multiple-column properties")
            return super().scaffold_list_columns()

    def scaffold_filters(self, name: Any) -> Any:
        # Flask-Admin's enum filters raise KeyError on a value that is not a member
        # (``?flt0_0=nonsense`` -> 500); treat such a value as no filter instead.
        filters = super().scaffold_filters(name)
        for flt in filters or ():
            flt.validate = _tolerant(flt.validate)
        return filters


def _tolerant(validate: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            return validate(value)
        except (KeyError, ValueError, TypeError):
            return False

    return check


def _blank_targets_to_none(model: Any) -> None:
    """A route target's "(none)" kind posts empty strings for its four columns
    (``<name>_kind``, ``_ref_id``, ``_number``, ``_sound``; ``orchestrator.db.targets``):
    an optional target left empty is stored as no target at all."""
    table = getattr(model, "__table__", None)
    kinds = [c.name[:-len("_kind")] for c in table.columns if c.name.endswith("_kind")] if table is not None else []
    for name in kinds:
        for part in ("kind", "ref_id", "number", "sound"):
            column = "%s_%s" % (name, part)
            if hasattr(model, column) and getattr(model, column) == "":
                setattr(model, column, None)


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
        return self.row_scope(query.filter(self.model.tenant_id == self.user.tenant_id))

    def row_scope(self, query: Any) -> Any:
        """Hook: narrow a tenant's rows further for the current user (e.g. own calls)."""
        return query

    def get_query(self) -> Any:
        return self._scoped(super().get_query())

    def _get_filter_groups(self) -> Any:
        groups = super()._get_filter_groups()
        for items in (groups or {}).values():
            for item in items:
                flt = self._filters[item["index"]] if self._filters else None
                if isinstance(flt, ScopedChoiceFilter):
                    item["options"] = [(str(k), str(v)) for k, v in flt.choices(self)]
        return groups

    def get_count_query(self) -> Any:
        return self._scoped(super().get_count_query())

    def get_one(self, id: Any) -> Any:
        """One row through the same scope as the list: another tenant's row (or one the
        user may not see) does not exist for this user."""
        try:
            pk = int(id)
        except (TypeError, ValueError):
            abort(404)
        obj = self._scoped(self.session.query(self.model)).filter(self.model.id == pk).one_or_none()
        if obj is None:
            abort(404)
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
        if hasattr(form, "name") and isinstance(getattr(model, "name", None), str):
            model.name = model.name.strip()
            if not model.name:
                form.name.errors = list(form.name.errors) + ["Enter a name: it cannot be blank."]
                raise ValidationError("Enter a name: it cannot be blank.")
        _blank_targets_to_none(model)
        self.normalise_numbers(form, model, tenant_id)
        self.refuse_inline_duplicates(form)
        self.before_validation(model, is_created)
        problems = errors_for(self.session, tenant_id, model)
        if problems:
            messages = []
            for doc_field, texts in problems.items():
                texts = [panel_message(t) for t in texts]
                field = getattr(form, self._form_field(form, doc_field), None)
                if field is not None:
                    field.errors = list(field.errors) + texts
                messages += ["%s: %s" % (getattr(field, "label", None) and field.label.text or doc_field, t)
                             for t in texts]
            raise ValidationError("Not saved. " + "; ".join(messages))
        caused = self._new_tenant_errors(tenant_id)
        if caused:
            origins = tenant_document(self.session, tenant_id, pending=True)[1]
            raise ValidationError("Not saved: this change would break another row: " + "; ".join(
                "%s: %s" % (describe_path(origins, e.field), panel_message(e.message)) for e in caused))

    # Columns holding one phone number, typed as people dial it (``admin.wording``).
    phone_columns = ("mobile", "outbound_caller_id", "e164")
    # Inline lists whose rows must differ in a field: list -> (field, message with %s).
    inline_unique: dict[str, tuple[str, str]] = {}

    def normalise_numbers(self, form: Any, model: Any, tenant_id: int) -> None:
        """Numbers in national form (``89161234567``, ``8 (495) 123-45-67``) become E.164
        in the tenant's country, in the row and in the form shown back."""
        table = getattr(model, "__table__", None)
        if table is None:
            return
        names = {c.name for c in table.columns}
        columns = [c for c in self.phone_columns if c in names]
        columns += [c for c in names if c.endswith("_number") and c[:-len("_number")] + "_kind" in names]
        if not columns:
            return
        with self.session.no_autoflush:
            region = tenant_region(self.session.scalar(select(Tenant.timezone).where(Tenant.id == tenant_id)))
        for column in columns:
            value = getattr(model, column)
            new = normalise_number(value, region)
            if new != value:
                setattr(model, column, new)
                field = getattr(form, column, None)
                if field is not None:
                    field.data = new

    def refuse_inline_duplicates(self, form: Any) -> None:
        """Two inline rows that the database would refuse as one (two options on key 1,
        one employee twice): said next to the second row's field, before any write."""
        problems = []
        for list_name, (key, message) in self.inline_unique.items():
            entries = getattr(getattr(form, list_name, None), "entries", None) or []
            seen: set[Any] = set()
            for entry in entries:
                sub = getattr(entry, "form", None)
                field = getattr(sub, key, None)
                if field is None or getattr(entry, "_should_delete", False):
                    continue
                value = getattr(field.data, "id", field.data)
                if value in (None, ""):
                    continue
                if value in seen:
                    text = message % (field.data,)
                    field.errors = list(field.errors) + [text]
                    problems.append(text)
                seen.add(value)
        if problems:
            raise ValidationError("Not saved. " + "; ".join(problems))

    def _new_tenant_errors(self, tenant_id: int) -> list[Any]:
        """Broken rules this change causes on *other* rows (a route cycle closes at the
        row that points back, e.g. a menu option, not at the department being edited)."""
        with Session(bind=self.session.get_bind()) as committed:
            before = {(e.field, e.message) for e in check_tenant(committed, tenant_id)}
        return [e for e in check_tenant(self.session, tenant_id) if (e.field, e.message) not in before]

    def _form_field(self, form: Any, doc_field: str) -> str:
        name = self.field_map.get(doc_field, doc_field)
        # "queue.announce_every" is the form's queue_announce_every
        for candidate in (name, name + "_ref_id", name + "_kind", name.replace(".", "_")):
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
            origins = tenant_document(self.session, model.tenant_id, pending=True)[1]
            users = sorted({describe_path(origins, e.field) for e in after})
            raise ValidationError("Not deleted: still in use by %s. Change %s first, then delete."
                                  % ("; ".join(users), "that" if len(users) == 1 else "those"))

    def handle_view_exception(self, exc: Exception) -> bool:
        if isinstance(exc, TenantDataError):
            from flask import flash

            flash(str(exc), "error")
            return True
        return super().handle_view_exception(exc)



class ReadOnlyTenantView(TenantScopedView):
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
