"""The route-target control: where a call goes (a number's work / after-hours target, a
department's no-answer target, a menu's options and default, a caller rule's target).

A target is stored as four columns (``orchestrator.db.targets``): ``<prefix>_kind``,
``_ref_id``, ``_number``, ``_sound``. The form shows the kind first, then, for a kind that
names a row of the tenant (department, employee, menu, voicemail box, fax box), a
searched list of that tenant's rows by name and extension instead of a raw id: the
``_ref_id`` field renders as Flask-Admin's select2 AJAX widget whose lookup is
``<view>/target_lookup/?kind=<kind>&query=<text>`` (at most ``AJAX_PAGE_SIZE`` rows of the
current user's tenant; operators see every tenant's rows, labelled with the company). The
panel's script (``admin.pages`` BASE) re-points the lookup when the kind changes and shows
only the fields the kind uses (the number for "external", the sound for "announcement").

A submitted id is never trusted for display: its label is looked up through the same
tenant scope (another tenant's id shows as ``#id``), and saving runs the tenant-document
rules, which refuse a reference outside the tenant.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from flask import jsonify, request, url_for
from flask_admin import expose
from markupsafe import Markup
from sqlalchemy import String, cast, false, or_, select
from werkzeug.wrappers import Response
from wtforms.fields import FieldList, FormField, IntegerField
from wtforms.widgets import html_params

from admin.auth import current_user
from admin.scoping import AJAX_PAGE_SIZE
from orchestrator.core.model import TargetKind
from orchestrator.db.models import Department, Employee, VoiceMenu, VoicemailBox

# The kinds whose target is a row of the tenant, and that row's table.
REF_MODELS: dict[str, type] = {
    TargetKind.DEPARTMENT.value: Department,
    TargetKind.EMPLOYEE.value: Employee,
    TargetKind.MENU.value: VoiceMenu,
    TargetKind.VOICEMAIL.value: VoicemailBox,
    TargetKind.FAX.value: VoicemailBox,  # a fax is delivered to a voicemail box
}

KIND_WORDS = {
    TargetKind.DEPARTMENT.value: "a department",
    TargetKind.EMPLOYEE.value: "an employee",
    TargetKind.MENU.value: "a voice menu",
    TargetKind.VOICEMAIL.value: "a voicemail box",
    TargetKind.EXTERNAL.value: "an outside number",
    TargetKind.ANNOUNCEMENT.value: "an announcement, then hang up",
    TargetKind.FAX.value: "receive a fax (into a voicemail box)",
}
KIND_CHOICES = [("", "(none)")] + [(k.value, KIND_WORDS[k.value]) for k in TargetKind]


def row_label(row: Any, with_tenant: bool = False) -> str:
    extension = getattr(row, "extension", None)
    text = "%s %s" % (extension, row.name) if extension else str(row.name)
    if with_tenant:
        text += " (%s)" % row.tenant.name
    return text


def _scoped(model: type) -> Any:
    query: Any = select(model)
    user = current_user()
    if user is None:
        return query.where(false())
    if not user.is_operator:
        query = query.where(model.tenant_id == user.tenant_id)  # type: ignore[attr-defined]
    return query


def find_targets(session: Any, kind: str, term: str, offset: int = 0) -> list[tuple[int, str]]:
    """The current user's rows of ``kind`` whose name or extension contains ``term``."""
    model = REF_MODELS.get(kind)
    if model is None:
        return []
    user = current_user()
    operator = user is not None and user.is_operator
    query = _scoped(model)
    term = (term or "").strip()[:100]
    if term:
        like = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(model.name.ilike(like, escape="\\"),  # type: ignore[attr-defined]
                                cast(model.extension, String).ilike(like, escape="\\")))  # type: ignore[attr-defined]
    query = query.order_by(model.extension, model.name, model.id)  # type: ignore[attr-defined]
    rows = session.scalars(query.offset(max(0, offset)).limit(AJAX_PAGE_SIZE))
    return [(row.id, row_label(row, operator)) for row in rows]


def target_label(session: Any, kind: str | None, ref_id: Any) -> str | None:
    """The label of a stored or submitted reference, through the user's scope."""
    model = REF_MODELS.get(kind or "")
    try:
        wanted = int(ref_id)
    except (TypeError, ValueError):
        return None
    if model is None:
        return None
    with session.no_autoflush:
        row = session.scalars(_scoped(model).where(model.id == wanted)).one_or_none()  # type: ignore[attr-defined]
    if row is None:
        return "#%d" % wanted
    user = current_user()
    return row_label(row, user is not None and user.is_operator)


class TargetRefWidget:
    """A hidden input that Flask-Admin's form.js turns into a searched select2 list."""

    def __call__(self, field: "TargetRefField", **kwargs: Any) -> Markup:
        kind = field.kind or ""
        kwargs.setdefault("id", field.id)
        label = target_label(field.session, kind, field.data) if field.session is not None else None
        attrs = {
            "type": "hidden", "name": field.name, "value": "" if field.data is None else str(field.data),
            "data-role": "select2-ajax", "data-allow-blank": "1", "data-minimum-input-length": "0",
            "data-url": url_for(".target_lookup", kind=kind), "data-pbx-target": field.id,
            "data-placeholder": "Search by name or extension", "style": "width: 100%",
        }
        if label is not None and field.data is not None:
            attrs["data-json"] = json.dumps([field.data, label])
        kwargs.pop("class", None)
        return Markup("<input %s>" % html_params(**attrs, **{k: v for k, v in kwargs.items() if k != "id"},
                                                  id=kwargs["id"]))


class TargetRefField(IntegerField):
    """``<prefix>_ref_id``: the row a target names, picked from a searched list."""

    widget = TargetRefWidget()  # type: ignore[assignment]
    kind: str | None = None
    session: Any = None

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and str(valuelist[0]).strip() in ("", "__None"):
            self.data = None
            return
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError("Pick the target from the list (search by name or extension).") from None


def target_form_args(prefix: str, label: str) -> dict[str, dict[str, Any]]:
    """``form_args`` of a target's four fields."""
    return {
        prefix + "_kind": {"label": "%s: where the call goes" % label},
        prefix + "_ref_id": {"label": "%s: which one" % label},
        prefix + "_number": {"label": "%s: outside number" % label,
                             "description": "E.164 or the company's national form, e.g. 8 916 123-45-67"},
        prefix + "_sound": {"label": "%s: announcement sound" % label},
    }


def target_overrides(*prefixes: str) -> dict[str, type]:
    return {p + "_ref_id": TargetRefField for p in prefixes}


def target_choices(*prefixes: str) -> dict[str, list[tuple[str, str]]]:
    return {p + "_kind": KIND_CHOICES for p in prefixes}


def _forms(form: Any) -> Iterator[Any]:
    yield form
    for field in getattr(form, "_fields", {}).values():
        if isinstance(field, FieldList):
            for entry in field.entries:
                if isinstance(entry, FormField):
                    yield from _forms(entry.form)
        elif isinstance(field, FormField):
            yield from _forms(field.form)


def bind_targets(form: Any, session: Any) -> Any:
    """Tell every target control of ``form`` (and its inline forms) its kind."""
    for sub in _forms(form):
        for name, field in getattr(sub, "_fields", {}).items():
            if isinstance(field, TargetRefField):
                kind_field = sub._fields.get(name[:-len("_ref_id")] + "_kind")
                field.kind = getattr(kind_field, "data", None) or None
                field.session = session
    return form


class TargetPickers:
    """Mixin of the views with route targets: the lookup endpoint and the bound controls."""

    session: Any

    def create_form(self, obj: Any = None) -> Any:
        return bind_targets(super().create_form(obj), self.session)  # type: ignore[misc]

    def edit_form(self, obj: Any = None) -> Any:
        return bind_targets(super().edit_form(obj), self.session)  # type: ignore[misc]

    @expose("/target_lookup/")
    def target_lookup(self) -> Response:
        try:
            offset = int(request.args.get("offset", 0) or 0)
        except ValueError:
            offset = 0
        return jsonify(find_targets(self.session, request.args.get("kind", ""), request.args.get("query", ""),
                                    offset))

    def target_list_label(self, model: Any, prefix: str) -> str:
        kind = getattr(model, prefix + "_kind")
        if not kind:
            return ""
        if kind in REF_MODELS:
            return "%s: %s" % (kind, target_label(self.session, kind, getattr(model, prefix + "_ref_id")))
        if kind == TargetKind.EXTERNAL.value:
            return "external: %s" % getattr(model, prefix + "_number")
        return "announcement" + (": %s" % getattr(model, prefix + "_sound") if getattr(model, prefix + "_sound") else "")


def target_formatter(prefix: str) -> Any:
    def show(view: Any, context: Any, model: Any, name: str) -> str:
        return view.target_list_label(model, prefix)

    return show

