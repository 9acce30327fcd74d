"""Live state of a tenant: calls in progress (Redis, ``CallStore.active_calls``, the same
data as the inspection tool: the caller, the number dialled, and the state the orchestrator
writes on each change, ``orchestrator.call_handler.live_facts``: menu, queue, ringing whom,
talking with whom, since when; durations tick in the page) and department members' state (``AgentStore.states``: log-in,
automatic pause, offer, phone on a call, wrap-up, today's figures) and each department's
queue (``AgentStore.queue``: callers on hold in order, how long they have waited on Redis's
clock, their number when the call's facts are known), refreshed by a small script polling
``calls.json``. Tenant admins see their tenant only; operators choose one
(``?tenant=<id>``; ``?find=`` searches tenants by name or SIP domain, so the chooser stays
short with hundreds of them). Both may log a member in or out (``member/login``,
``member/logout``: POST with the CSRF token and the employee's ``id``); logging in also
ends an automatic pause after missed offers. Open callbacks from the queues (caller, waiting
since their place, status) are listed with a Cancel button (``callback/cancel``: POST with the
CSRF token and the callback ``id``; operators also send ``tenant``)."""
from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import redis
from flask import abort, flash, jsonify, redirect, request, url_for
from flask_admin import BaseView, expose
from sqlalchemy import func, or_, select
from sqlalchemy.orm import scoped_session
from werkzeug.wrappers import Response

from admin.auth import AdministratorsPage, CurrentUser, current_user
from orchestrator.db.models import Department, DepartmentMember, Employee, Tenant
from orchestrator.member_offers import utc_days
from orchestrator.store.agents import AgentStore, MemberState
from orchestrator.store.callbacks import CallbackStore
from orchestrator.store.redis_store import CallStore

REFRESH_SECONDS = 5
CHOOSER_SIZE = 50  # tenants listed at once in the operator's chooser; more: search
SHOWN_FACTS = ("caller", "destination", "entry", "state", "with", "department", "started_ms", "state_ms")
REDIS_DOWN = "Redis is not answering (%s): live state cannot be shown right now."
# A call's ``state`` fact (orchestrator.call_handler.live_facts) in words; ``with`` follows.
CALL_STATES = {"menu": "in the menu", "queue": "waiting in the queue", "ringing": "ringing",
               "talking": "talking with", "voicemail": "leaving a voicemail", "fax": "sending a fax",
               "announcement": "hearing an announcement", "routing": "being routed"}


def _ms(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def clock(ms: int, tz: ZoneInfo) -> str:
    """Epoch ms as the tenant's local time of day (HH:MM:SS); empty if unknown."""
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M:%S") if ms > 0 else ""


def call_rows(calls: dict[str, dict[str, str]], employees: Mapping[int, str] | None = None,
              departments: Mapping[int, str] | None = None, now_ms: int = 0,
              tz: ZoneInfo = ZoneInfo("UTC")) -> list[dict[str, Any]]:
    """Calls as table rows, oldest first: caller, number dialled, the state in words (who
    rings, who talks, which queue: ``employees`` / ``departments`` name the ids), since when
    (the tenant's local time ``tz``), and the duration and time in this state on ``now_ms``
    (the page ticks them on from ``started_ms`` / ``since_ms``); other facts in ``details``."""
    employees, departments = employees or {}, departments or {}
    rows = []
    for uuid, facts in sorted(calls.items(), key=lambda kv: (_ms(kv[1].get("started_ms")), kv[0])):
        state = facts.get("state", "")
        who = [w for w in (facts.get("with") or "").split(",") if w]
        names = ", ".join(employees.get(int(w), w) if w.isdigit() else w.removeprefix("tel:") for w in who)
        words = CALL_STATES.get(state, state or "starting")
        if names:
            words += " " + names
        department = _ms(facts.get("department"))
        if department and state in ("queue", "ringing"):
            words += " (%s)" % departments.get(department, "department #%d" % department)
        started, since = _ms(facts.get("started_ms")), _ms(facts.get("state_ms")) or _ms(facts.get("started_ms"))
        rest = ", ".join("%s=%s" % (k, v) for k, v in sorted(facts.items()) if k not in SHOWN_FACTS)
        rows.append({"uuid": uuid, "caller": facts.get("caller", ""), "destination": facts.get("destination", ""),
                     "state": state, "state_text": words, "with": who,
                     "started_ms": started, "since_ms": since, "since": clock(since, tz),
                     "duration": talk_time(now_ms - started) if started else "",
                     "in_state": talk_time(now_ms - since) if since else "", "details": rest})
    return rows


def holding_calls(calls: dict[str, dict[str, str]]) -> dict[int, tuple[str, str]]:
    """Employee id -> (the call's state, its caller) for every member a call rings or talks with."""
    out: dict[int, tuple[str, str]] = {}
    for facts in calls.values():
        if facts.get("state") in ("ringing", "talking"):
            for w in (facts.get("with") or "").split(","):
                if w.isdigit():
                    out[int(w)] = (facts["state"], facts.get("caller", ""))
    return out


def member_state(logged_in: bool, state: MemberState | None, now_ms: int,
                 call: tuple[str, str] | None = None) -> tuple[str, str]:
    """(code, words a tenant admin understands) of one member, ``now_ms`` on Redis's clock;
    ``call``: (state, caller) of the call that rings or talks with the member, from its
    facts (``holding_calls``).

    The order is what matters most to the admin: logged out, then paused (no offers until
    logged in again), then talking or ringing. An answered department call still holds its
    offer, so the offer alone cannot tell ringing from talking: the call's facts can (the
    orchestrator writes "talking" on the bridge). Without them, a phone with a channel
    (seen by the presence watcher) is talking and a held offer is ringing. Then wrap-up,
    available."""
    if not logged_in:
        return "logged_out", "logged out"
    if state is None:
        return "unknown", "unknown (live state unavailable)"
    if state.paused:
        if state.missed > 0:
            return "paused", "paused after %d missed offer%s" % (state.missed, "" if state.missed == 1 else "s")
        return "paused", "paused"
    if call is not None and call[0] == "talking":
        return "talking", "talking" + (" with %s" % call[1] if call[1] else "")
    if call is not None and call[0] == "ringing":
        return "ringing", "ringing" + (" (call from %s)" % call[1] if call[1] else "")
    if state.channels > 0:
        return "talking", "talking"
    if state.offer and state.offer_until_ms > now_ms:
        return "ringing", "ringing"
    if state.wrapup_until_ms > now_ms:
        return "wrapup", "wrap-up, %d s left" % math.ceil((state.wrapup_until_ms - now_ms) / 1000)
    return "available", "available"


def queue_rows(departments: list[tuple[int, str, str]], waiting: dict[int, list[tuple[str, int]]] | None,
               calls: dict[str, dict[str, str]], now_ms: int) -> list[dict[str, Any]]:
    """One entry per department (id, name, extension), its waiting callers in order:
    position, call uuid, caller (from the call's facts, if still there) and seconds waited
    since the caller's place (``now_ms`` and places on Redis's clock). ``waiting`` None:
    the queues are unknown (Redis is not answering)."""
    out = []
    for department_id, name, extension in departments:
        callers = [{"position": n, "uuid": uuid, "caller": calls.get(uuid, {}).get("caller", ""),
                    "waited_s": max(0, now_ms - place_ms) // 1000}
                   for n, (uuid, place_ms) in enumerate((waiting or {}).get(department_id, []), 1)]
        out.append({"department": "%s %s" % (extension, name), "department_id": department_id,
                    "known": waiting is not None, "waiting": callers})
    return out


def talk_time(ms: int) -> str:
    """Talk time as h:mm:ss (or m:ss under an hour)."""
    seconds = max(0, ms) // 1000
    hours, rest = divmod(seconds, 3600)
    return "%d:%02d:%02d" % (hours, *divmod(rest, 60)) if hours else "%d:%02d" % divmod(rest, 60)


class LiveView(AdministratorsPage, BaseView):
    def __init__(self, db: scoped_session, calls: CallStore | None, agents: AgentStore | None = None,
                 **kw: Any) -> None:
        self.db = db
        self.calls = calls
        self.agents = agents
        self.callbacks = CallbackStore(agents.r) if agents is not None else None
        super().__init__(**kw)

    @property
    def available(self) -> bool:
        return self.calls is not None and self.agents is not None

    def _tenants(self, user: CurrentUser, find: str, chosen: int | None) -> tuple[list[Tenant], int]:
        """The operator's tenant chooser: up to ``CHOOSER_SIZE`` tenants whose name or SIP
        domain contains ``find`` (and the chosen one), and how many match in all."""
        if not user.is_operator:
            return [t for t in [self.db.get(Tenant, user.tenant_id)] if t is not None], 1
        query = select(Tenant)
        if find:
            pattern = "%%%s%%" % find.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(or_(Tenant.name.ilike(pattern, escape="\\"),
                                    Tenant.sip_domain.ilike(pattern, escape="\\")))
        total = self.db.scalar(select(func.count()).select_from(query.subquery())) or 0
        shown = list(self.db.scalars(query.order_by(Tenant.name, Tenant.id).limit(CHOOSER_SIZE)))
        if chosen is not None and chosen not in {t.id for t in shown}:
            tenant = self.db.get(Tenant, chosen)
            shown = ([tenant] if tenant is not None else []) + shown
        return shown, total

    def _tenant_id(self, user: CurrentUser) -> int | None:
        """Tenant admins: their own. Operators: ``?tenant=`` (an unknown id is 404), else the
        first tenant by name."""
        if not user.is_operator:
            return user.tenant_id
        wanted = request.args.get("tenant", type=int)
        if wanted is not None:
            if self.db.get(Tenant, wanted) is None:
                abort(404)
            return wanted
        return self.db.scalar(select(Tenant.id).order_by(Tenant.name, Tenant.id).limit(1))

    def _active_calls(self, tenant_id: int | None) -> dict[str, dict[str, str]]:
        if self.calls is None or tenant_id is None:
            return {}
        return self.calls.active_calls(tenant_id, int(time.time() * 1000))

    def _redis_now_ms(self) -> int:
        assert self.agents is not None
        seconds, micros = self.agents.r.time()  # the clock the agent scripts write with
        return int(seconds) * 1000 + int(micros) // 1000

    def _members(self, tenant_id: int | None, live: bool = True,
                 calls: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
        """Every department's members with their live state (one Redis round trip; with
        ``live`` false, only what the database knows); ``calls``' facts tell ringing from
        talking."""
        if tenant_id is None:
            return []
        rows = self.db.execute(
            select(Department.name, Employee.id, Employee.extension, Employee.name, Employee.logged_in)
            .join(DepartmentMember, DepartmentMember.department_id == Department.id)
            .join(Employee, Employee.id == DepartmentMember.employee_id)
            .where(Department.tenant_id == tenant_id, DepartmentMember.tenant_id == tenant_id,
                   Employee.tenant_id == tenant_id)
            .order_by(Department.extension, DepartmentMember.order)
        ).all()
        states: dict[int, MemberState] = {}
        now_ms = 0
        if live and self.agents is not None and rows:
            now_ms = self._redis_now_ms()
            states = self.agents.states(tenant_id, sorted({r[1] for r in rows}), utc_days(now_ms, 1))
        out = []
        holding = holding_calls(calls or {})
        for department, employee_id, extension, name, logged_in in rows:
            state = states.get(employee_id)
            code, words = member_state(logged_in, state, now_ms, holding.get(employee_id))
            out.append({"department": department, "employee": "%s %s" % (extension, name),
                        "employee_id": employee_id, "logged_in": logged_in, "state": code, "state_text": words,
                        "calls_today": state.calls_today if state else 0,
                        "talk_today": talk_time(state.talk_ms_today if state else 0)})
        return out

    def _queues(self, tenant_id: int | None, calls: dict[str, dict[str, str]] | None) -> list[dict[str, Any]]:
        """Every department's queue (``calls`` None: Redis is down, only the departments)."""
        if tenant_id is None:
            return []
        departments = [(r[0], r[1], r[2]) for r in self.db.execute(
            select(Department.id, Department.name, Department.extension)
            .where(Department.tenant_id == tenant_id).order_by(Department.extension))]
        if calls is None or self.agents is None or not departments:
            return queue_rows(departments, None, {}, 0)
        now_ms = self._redis_now_ms()
        waiting = {d[0]: self.agents.queue(tenant_id, d[0]) for d in departments}
        return queue_rows(departments, waiting, calls, now_ms)

    def _callbacks(self, tenant_id: int | None) -> list[dict[str, Any]]:
        """Open callbacks (pending or being dialled), oldest place first."""
        if tenant_id is None or self.callbacks is None:
            return []
        names = {r[0]: "%s %s" % (r[2], r[1]) for r in self.db.execute(
            select(Department.id, Department.name, Department.extension).where(Department.tenant_id == tenant_id))}
        now_ms = self._redis_now_ms()
        return [{"id": cb.id, "department": names.get(cb.department_id, "#%d" % cb.department_id),
                 "department_id": cb.department_id, "caller": cb.caller, "status": cb.status, "attempts": cb.attempts,
                 "waited_s": max(0, now_ms - cb.since_ms) // 1000, "cancellable": cb.status == "pending"}
                for cb in self.callbacks.open(tenant_id)]

    def _call_rows(self, tenant_id: int | None, calls: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        """``call_rows`` with the tenant's employees and departments by extension and name,
        times in the tenant's time zone (durations on this server's clock, which wrote
        ``started_ms``: the orchestrators' wall clock)."""
        if tenant_id is None or not calls:
            return []
        employees = {r[0]: "%s %s" % (r[1], r[2]) for r in self.db.execute(
            select(Employee.id, Employee.extension, Employee.name).where(Employee.tenant_id == tenant_id))}
        departments = {r[0]: "%s %s" % (r[1], r[2]) for r in self.db.execute(
            select(Department.id, Department.extension, Department.name).where(Department.tenant_id == tenant_id))}
        tenant = self.db.get(Tenant, tenant_id)
        try:
            tz = ZoneInfo(tenant.timezone if tenant is not None else "UTC")
        except (ValueError, KeyError):  # validated on save; an old row may still hold a bad name
            tz = ZoneInfo("UTC")
        return call_rows(calls, employees, departments, int(time.time() * 1000), tz)

    def _live(self, tenant_id: int | None) -> dict[str, Any]:
        """Calls, members, queues and a problem: a Redis outage is said, not a server error."""
        try:
            calls = self._active_calls(tenant_id)
            return {"calls": self._call_rows(tenant_id, calls), "now_ms": int(time.time() * 1000),
                    "members": self._members(tenant_id, calls=calls),
                    "queues": self._queues(tenant_id, calls), "callbacks": self._callbacks(tenant_id), "problem": ""}
        except redis.RedisError as exc:
            return {"calls": [], "now_ms": int(time.time() * 1000), "members": self._members(tenant_id, live=False),
                    "queues": self._queues(tenant_id, None), "callbacks": [], "problem": REDIS_DOWN % exc}

    @expose("/")
    def index(self) -> str:
        user = current_user()
        assert user is not None
        tenant_id = self._tenant_id(user)
        find = (request.args.get("find") or "").strip()[:100] if user.is_operator else ""
        tenants, matching = self._tenants(user, find, tenant_id)
        if find and matching == 1 and tenants[-1].id != tenant_id:  # the one match: show it
            tenant_id = tenants[-1].id
            tenants = tenants[-1:]
        json_url = url_for(".calls_json", tenant=tenant_id) if user.is_operator else url_for(".calls_json")
        return self.render("pbx/live.html", available=self.available, tenants=tenants, tenant_id=tenant_id,
                           chooser=user.is_operator, find=find, matching=matching, limit=CHOOSER_SIZE,
                           **self._live(tenant_id), json_url=json_url,
                           login_url=url_for(".member_login"), logout_url=url_for(".member_logout"),
                           cancel_url=url_for(".callback_cancel"),
                           refresh_seconds=REFRESH_SECONDS)

    @expose("/calls.json")
    def calls_json(self) -> Response:
        user = current_user()
        assert user is not None
        tenant_id = self._tenant_id(user)
        live = self._live(tenant_id) if self.available else {"calls": [], "now_ms": int(time.time() * 1000), "members": [], "queues": [], "problem": ""}
        return jsonify({"tenant_id": tenant_id, "available": self.available, **live})

    @expose("/member/login", methods=("POST",))
    def member_login(self) -> Response:
        return self._log(True)

    @expose("/member/logout", methods=("POST",))
    def member_logout(self) -> Response:
        return self._log(False)

    @expose("/callback/cancel", methods=("POST",))
    def callback_cancel(self) -> Response:
        """Cancel the pending callback ``id`` of the user's tenant (operators: of ``tenant``);
        another tenant's callback, or none, does not exist: 404."""
        user = current_user()
        assert user is not None
        tenant_id = user.tenant_id if not user.is_operator else request.form.get("tenant", type=int)
        callback_id = (request.form.get("id") or "").strip()
        if tenant_id is None or not callback_id or self.callbacks is None:
            abort(404)
        try:
            found = self.callbacks.get(tenant_id, callback_id)
            if found is None:
                abort(404)
            if self.callbacks.cancel(tenant_id, callback_id):
                flash("The callback to %s is cancelled." % found.caller, "success")
            else:
                flash("The callback to %s is %s: it cannot be cancelled now." % (found.caller, found.status), "error")
        except redis.RedisError as exc:
            flash(REDIS_DOWN % exc, "error")
        return redirect(url_for(".index", tenant=tenant_id) if user.is_operator else url_for(".index"))

    def _log(self, logged_in: bool) -> Response:
        """Log the employee ``id`` (a form field) in or out: the tenant's own employees only
        (anything else does not exist: 404). The database change is the log-in state calls
        are routed by; logging in also ends an automatic pause in Redis."""
        user = current_user()
        assert user is not None
        employee_id = request.form.get("id", type=int)
        query = select(Employee).where(Employee.id == employee_id)
        if not user.is_operator:
            query = query.where(Employee.tenant_id == user.tenant_id)
        employee = self.db.scalar(query) if employee_id is not None else None
        if employee is None:
            abort(404)
        tenant_id, member = employee.tenant_id, employee.id
        label = "%s %s" % (employee.extension, employee.name)
        employee.logged_in = logged_in
        self.db.commit()  # bumps the tenant's routing version: the next call sees it
        flash("%s is logged %s." % (label, "in" if logged_in else "out"), "success")
        if logged_in and self.agents is not None:
            try:
                self.agents.resume(tenant_id, member)
            except redis.RedisError as exc:
                flash("%s is logged in, but an automatic pause after missed offers could not be ended: "
                      "Redis is not answering (%s). Log them in again in a moment." % (label, exc), "error")
        back = url_for(".index", tenant=tenant_id) if user.is_operator else url_for(".index")
        return redirect(back)
