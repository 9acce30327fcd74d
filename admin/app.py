"""``create_app``: the admin panel and FreeSWITCH's directory as one Flask app."""
from __future__ import annotations

import secrets
import time
import warnings
from datetime import timedelta
from typing import Any

import redis
from flask import Flask, g, redirect, request, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.theme import Bootstrap4Theme
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import scoped_session, sessionmaker
from werkzeug.wrappers import Response

from admin import auth, pages, security
from admin.accounts import AccountView
from admin.directory import make_directory_blueprint
from admin.explain import ExplainView
from admin.fax import FaxMessageView
from admin.live import LiveView
from admin.profile import ProfileView
from admin.ratelimit import LoginThrottle, MemoryLoginThrottle, RedisLoginThrottle
from admin.views import (
    CallerRuleView,
    CallRecordView,
    DepartmentView,
    EmployeeView,
    MissedOfferView,
    PhoneNumberView,
    ScheduleView,
    TenantView,
    VoicemailBoxView,
    VoiceMenuView,
)
from admin.voicemail import VoicemailMessageView
from orchestrator import metrics
from orchestrator.config import Settings
from orchestrator.db.engine import add_change_publisher
from orchestrator.db.models import Tenant
from orchestrator.db.versioning import Publisher
from orchestrator.store.agents import AgentStore
from orchestrator.store.redis_store import CallStore
from orchestrator.wiring import policy_from

SESSION_LIFETIME = timedelta(hours=8)


class HomeView(AdminIndexView):
    def is_accessible(self) -> bool:
        return auth.current_user() is not None  # every role; the menu shows what each may use

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Response:
        return redirect(url_for("auth.login", next=request.full_path))

    @expose("/")
    def index(self) -> str:
        return self.render("admin/index.html")


def create_app(settings: Settings, session_factory: sessionmaker, on_change: Publisher | None = None, *,
               redis_client: redis.Redis | None = None, login_throttle: LoginThrottle | None = None,
               session_lifetime: timedelta = SESSION_LIFETIME) -> Flask:
    """The admin panel over ``session_factory``'s database. ``on_change`` (if given) is
    registered as a routing change publisher (called after each committed change).

    ``redis_client`` (optional) feeds the live-state pages (calls and members' state) and
    keeps the failed-login counters (shared by every admin process); without it the
    counters live in memory and the live-state page says it is unavailable.
    ``login_throttle`` replaces the default (5 failures per username and address in 10
    minutes)."""
    settings.check()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.admin_secret_key or secrets.token_hex(32),  # dev: random per process
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        PERMANENT_SESSION_LIFETIME=session_lifetime,
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.jinja_loader = pages.loader()
    if login_throttle is None:
        login_throttle = RedisLoginThrottle(redis_client) if redis_client is not None else MemoryLoginThrottle()
    app.extensions["pbx_settings"] = settings
    if on_change is not None:
        add_change_publisher(session_factory, on_change)
    db = scoped_session(session_factory)
    app.extensions["pbx_db"] = db

    with session_factory.begin() as session:
        auth.bootstrap_operator(session, settings.admin_password)

    security.install(app, settings.trusted_proxies)
    csrf = CSRFProtect(app)
    directory = make_directory_blueprint(settings, db)
    csrf.exempt(directory)
    app.register_blueprint(directory)
    app.register_blueprint(auth.make_blueprint(db, login_throttle))

    @app.before_request
    def _load_user() -> None:
        g.pbx_started = time.perf_counter()
        auth.load_user(db())

    @app.after_request
    def _count(response: Response) -> Response:
        metrics.panel_response(response.status_code, time.perf_counter() - g.get("pbx_started", time.perf_counter()))
        return response

    # Operators only: a signed-in operator, or Prometheus with PBX_METRICS_USER /
    # PBX_METRICS_PASSWORD (basic auth). Tenants' accounts get 403, anyone else 401.
    registry = metrics.panel_registry(redis_client, settings.metrics_top_tenants)
    metrics.count_database_errors(session_factory.kw["bind"])
    if redis_client is not None:
        metrics.count_redis_errors(redis_client)

    @app.route("/metrics")
    def _metrics() -> Response:
        user = auth.current_user()
        if not (user is not None and user.is_operator) and not metrics.basic_auth_ok(
                request.authorization, settings.metrics_user, settings.metrics_password):
            if user is not None:
                return Response("operators only\n", status=403, mimetype="text/plain")
            return Response("authentication required (an operator's session, or PBX_METRICS_USER / PBX_METRICS_PASSWORD)\n",
                            status=401, headers={"WWW-Authenticate": 'Basic realm="pbx-metrics"'}, mimetype="text/plain")
        body, content_type = metrics.exposition(registry, request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    @app.context_processor
    def _signed_in() -> dict[str, Any]:
        return {"pbx_user": auth.current_user()}

    @app.teardown_appcontext
    def _remove_session(exc: BaseException | None) -> None:
        db.remove()

    @app.route("/")
    def _root() -> Response:
        return redirect(url_for("admin.index"))

    panel = Admin(app, name="Cloud PBX", index_view=HomeView(url="/admin"),
                  theme=Bootstrap4Theme(base_template="pbx/base.html"), csp_nonce_generator=security.csp_nonce)
    with warnings.catch_warnings():
        # Flask-Admin 2.x prefers a Flask-SQLAlchemy ``db`` object; a plain scoped_session
        # is still supported (and is what a non-Flask-SQLAlchemy app has).
        warnings.simplefilter("ignore", DeprecationWarning)
        _add_views(panel, db)
    calls, agents = (CallStore(redis_client), AgentStore(redis_client)) if redis_client is not None else (None, None)
    panel.add_view(LiveView(db, calls, agents, name="Live state", endpoint="live"))
    panel.add_view(ProfileView(db, name="My profile", endpoint="profile"))
    panel.add_view(ExplainView(db, policy_from(settings), name="Routing explainer", endpoint="explain"))
    return app


def _add_views(panel: Admin, db: scoped_session) -> None:
    panel.add_view(TenantView(Tenant, db, name="Tenants", endpoint="tenant"))
    panel.add_view(EmployeeView(db, name="Employees", endpoint="employee"))
    panel.add_view(DepartmentView(db, name="Departments", endpoint="department"))
    panel.add_view(PhoneNumberView(db, name="Numbers", endpoint="number"))
    panel.add_view(ScheduleView(db, name="Schedules", endpoint="schedule"))
    panel.add_view(VoiceMenuView(db, name="Voice menus", endpoint="menu"))
    panel.add_view(VoicemailBoxView(db, name="Voicemail boxes", endpoint="voicemail_box"))
    panel.add_view(CallerRuleView(db, name="Caller rules", endpoint="caller_rule"))
    panel.add_view(CallRecordView(db, name="Call history", endpoint="call", category="History"))
    panel.add_view(MissedOfferView(db, name="Missed offers", endpoint="missed_offer", category="History"))
    panel.add_view(VoicemailMessageView(db, name="Voicemail messages", endpoint="voicemail", category="History"))
    panel.add_view(FaxMessageView(db, name="Faxes", endpoint="fax", category="History"))
    panel.add_view(AccountView(db, name="Accounts", endpoint="account"))
