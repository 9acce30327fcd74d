"""Routing versions, bumped automatically, and publishers told after commit.

A ``before_flush`` listener looks at every inserted, updated and deleted row:

* a routing row of a tenant (``models.ROUTING_TABLES``) or the tenant row itself bumps
  that tenant's ``routing_version`` once per flush (``UPDATE ... SET routing_version =
  routing_version + 1``, so concurrent writers never lose a bump);
* a phone number added/removed/renumbered/moved, or a tenant added/removed/with a new
  SIP domain or enabled flag bumps the global ``routing_meta.index_version``.

After the transaction commits, every publisher registered on the session factory is
called with ``(changed: {tenant_id: new_version}, index_version: int | None)``. A
publisher that fails is logged; the commit stands (caches also poll versions).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db.meta import INDEX_VERSION, RoutingMeta
from orchestrator.db.models import ROUTING_TABLES, PhoneNumber, Tenant

log = logging.getLogger(__name__)

Publisher = Callable[[dict[int, int], "int | None"], None]

_PENDING = "pbx_routing_changes"  # session.info key: {"tenants": set, "index": bool}
_PUBLISHERS = "pbx_publishers"  # session.info key (copied from the factory's kw)
_TENANT_INDEX_FIELDS = ("sip_domain", "enabled")


def _changed(obj: Any, attr: str) -> bool:
    return inspect(obj).attrs[attr].history.has_changes()


def _tenant_of(obj: Any) -> int | None:
    """The row's tenant; for a new child row (tenant_id still unset) its loaded parent's."""
    tenant_id = getattr(obj, "tenant_id", None)
    if tenant_id is not None:
        return tenant_id
    tenant = obj.__dict__.get("tenant")
    if tenant is not None:
        return tenant.id
    for rel in inspect(obj).mapper.relationships:
        parent = obj.__dict__.get(rel.key)
        if rel.direction.name == "MANYTOONE" and getattr(parent, "tenant_id", None) is not None:
            return parent.tenant_id
    return None


def _collect(session: Session) -> tuple[set[int], bool]:
    tenants: set[int] = set()
    index = False
    for obj in session.new:
        if isinstance(obj, Tenant):
            index = True
        elif getattr(obj, "__tablename__", None) in ROUTING_TABLES:
            tid = _tenant_of(obj)
            if tid is not None:  # None: belongs to a tenant created in this flush
                tenants.add(tid)
            index = index or isinstance(obj, PhoneNumber)
    for obj in session.deleted:
        if isinstance(obj, Tenant):
            index = True
        elif getattr(obj, "__tablename__", None) in ROUTING_TABLES:
            tid = _tenant_of(obj)
            if tid is not None:
                tenants.add(tid)
            index = index or isinstance(obj, PhoneNumber)
    for obj in session.dirty:
        if not session.is_modified(obj, include_collections=False):
            continue
        if isinstance(obj, Tenant):
            if obj.id is not None and any(
                _changed(obj, a.key) for a in inspect(obj).mapper.column_attrs if a.key != "routing_version"
            ):
                tenants.add(obj.id)
            index = index or any(_changed(obj, a) for a in _TENANT_INDEX_FIELDS)
        elif getattr(obj, "__tablename__", None) in ROUTING_TABLES:
            tid = _tenant_of(obj)
            if tid is not None:
                tenants.add(tid)
            if isinstance(obj, PhoneNumber) and (_changed(obj, "e164") or _changed(obj, "tenant_id")):
                index = True
                old: Any = inspect(obj).attrs.tenant_id.history.deleted
                tenants.update(t for t in old if t is not None)
    deleted_tenants = {obj.id for obj in session.deleted if isinstance(obj, Tenant)}
    return tenants - deleted_tenants, index


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    tenants, index = _collect(session)
    pending = session.info.setdefault(_PENDING, {"tenants": set(), "index": False})
    with session.no_autoflush:
        for tid in sorted(tenants):
            tenant = session.get(Tenant, tid)
            if tenant is not None and tenant not in session.deleted:
                tenant.routing_version = Tenant.routing_version + 1  # SQL-side increment
                pending["tenants"].add(tid)
        if index:
            meta = session.get(RoutingMeta, INDEX_VERSION)
            if meta is None:
                session.add(RoutingMeta(key=INDEX_VERSION, value=1))
            else:
                meta.value = RoutingMeta.value + 1
            pending["index"] = True
    for obj in session.new:
        if isinstance(obj, Tenant):
            pending.setdefault("new", []).append(obj)


def _after_flush_postexec(session: Session, flush_context: Any) -> None:
    """Read the new versions inside the transaction (the latest flush wins)."""
    pending = session.info.get(_PENDING)
    if not pending:
        return
    for tenant in pending.pop("new", []):
        if tenant.id is not None and tenant not in session.deleted:
            pending["tenants"].add(tenant.id)
    conn = session.connection()
    if pending["tenants"]:
        rows = conn.execute(
            select(Tenant.id, Tenant.routing_version).where(Tenant.id.in_(pending["tenants"]))
        )
        pending["versions"] = {tid: version for tid, version in rows}
    if pending["index"]:
        pending["index_version"] = conn.execute(
            select(RoutingMeta.value).where(RoutingMeta.key == INDEX_VERSION)
        ).scalar()


def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    publishers: list[Publisher] = session.info.get(_PUBLISHERS, [])
    if not pending or not publishers:
        return
    changed: dict[int, int] = dict(pending.get("versions", {}))
    index_version: int | None = pending.get("index_version")
    if not changed and index_version is None:
        return
    for publish in publishers:
        try:
            publish(changed, index_version)
        except Exception:  # a broken publisher must not undo a committed change
            log.exception("routing change publisher %r failed", publish)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def install(session_factory: sessionmaker) -> None:
    """Attach the listeners to a session factory (done by ``engine.make_session_factory``)."""
    if getattr(session_factory, "_pbx_versioning", False):
        return
    event.listen(session_factory, "before_flush", _before_flush)
    event.listen(session_factory, "after_flush_postexec", _after_flush_postexec)
    event.listen(session_factory, "after_commit", _after_commit)
    event.listen(session_factory, "after_soft_rollback", lambda s, prev: _after_rollback(s))
    session_factory.kw.setdefault("info", {})[_PUBLISHERS] = []
    session_factory._pbx_versioning = True  # type: ignore[attr-defined]


def add_change_publisher(session_factory: sessionmaker, fn: Publisher) -> None:
    install(session_factory)
    session_factory.kw["info"][_PUBLISHERS].append(fn)
