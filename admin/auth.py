"""Login for the admin panel: a session cookie holding the admin user's id.

The operator account ``operator`` is created on start from ``settings.admin_password``;
in production ``Settings.check`` has already refused the default password. Passwords are
hashed with werkzeug.security (scrypt). Sessions are permanent with the app's
``PERMANENT_SESSION_LIFETIME``; failed logins are throttled per username and client
address (``admin.ratelimit``).

Roles: operator (every tenant), tenant_admin (all of their tenant), user (their
company's call history, their own profile), restricted (their own calls and profile).

A disabled account keeps its row and its password hash behind a ``!`` (the way
``passwd -l`` locks a Unix account): it cannot log in, its open sessions end at their
next request, and enabling it again restores the same password.

Sessions are checked against the database on every request: the cookie carries the
account's ``session_version``, which logging out, a new password and disabling the
account raise, so every session signed with the old version ends (a copied cookie
included, on every device: logging out signs the account out everywhere). An account of
a suspended tenant is signed out at its next request. An unknown username costs the same
scrypt verification as a known one (``DUMMY_HASH``), so login time does not tell whether
a username exists.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlparse

from flask import (
    Blueprint,
    abort,
    g,
    redirect,
    render_template_string,
    request,
    session,
    url_for,
)
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import Session, scoped_session
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from admin.ratelimit import LoginThrottle
from orchestrator.db.accounts import AdminRole, AdminUser
from orchestrator.db.models import Tenant

OPERATOR_USERNAME = "operator"
DISABLED_MARK = "!"  # prefixed to the password hash of a disabled account


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    role: AdminRole
    tenant_id: int | None
    employee_id: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.role is AdminRole.OPERATOR

    @property
    def can_administer(self) -> bool:
        return self.role in (AdminRole.OPERATOR, AdminRole.TENANT_ADMIN)


def current_user() -> CurrentUser | None:
    return g.get("admin_user")


class SignedInPage:
    """Access rules shared by the panel's views: ``allowed(user)`` decides; someone not
    signed in goes to the login page (and back after it), a signed-in user who may not
    see the page gets 403."""

    def allowed(self, user: CurrentUser) -> bool:
        return True

    def is_accessible(self) -> bool:
        user = current_user()
        return user is not None and self.allowed(user)

    def inaccessible_callback(self, name: str, **kwargs: object) -> Response:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403)


class AdministratorsPage(SignedInPage):
    """Pages for tenant admins and operators only."""

    def allowed(self, user: CurrentUser) -> bool:
        return user.can_administer


def is_disabled(password_hash: str) -> bool:
    return password_hash.startswith(DISABLED_MARK)


def with_disabled(password_hash: str, disabled: bool) -> str:
    """The stored hash of an account that is (not) disabled, keeping its password."""
    bare = password_hash.removeprefix(DISABLED_MARK)
    return DISABLED_MARK + bare if disabled else bare


def password_matches(password_hash: str, password: str) -> bool:
    """Whether ``password`` is the account's password (disabled or not)."""
    return check_password_hash(password_hash.removeprefix(DISABLED_MARK), password)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash of a random password with the same method and cost as real ones: verified
    for unknown usernames so that they take as long as known ones."""
    return generate_password_hash(secrets.token_urlsafe(16))


def new_session_version(user: AdminUser) -> int:
    """End every open session of ``user`` (its next request finds it signed out)."""
    user.session_version = (user.session_version or 0) + 1
    return user.session_version


def bootstrap_operator(session: Session, password: str) -> None:
    """Create the operator account, or reset its password to the configured one (an
    operator who disabled it keeps it disabled)."""
    user = session.scalar(select(AdminUser).where(AdminUser.username == OPERATOR_USERNAME))
    if user is None:
        session.add(AdminUser(username=OPERATOR_USERNAME, role=AdminRole.OPERATOR,
                              password_hash=generate_password_hash(password)))
    elif not password_matches(user.password_hash, password):
        user.password_hash = with_disabled(generate_password_hash(password), is_disabled(user.password_hash))
        new_session_version(user)


SESSION_USER = "admin_user_id"
SESSION_VERSION = "admin_session_version"


def load_user(db: Session) -> None:
    """``before_request``: put the logged-in user (if any) in ``g.admin_user``. A session
    that no longer holds (logged out elsewhere, new password, account disabled or deleted,
    tenant suspended) is cleared: the user is signed out."""
    user_id = session.get(SESSION_USER)
    if user_id is None:
        return
    version = session.get(SESSION_VERSION)
    row = None
    if isinstance(user_id, int) and isinstance(version, int):
        row = db.execute(select(AdminUser, Tenant.enabled).outerjoin(Tenant, Tenant.id == AdminUser.tenant_id)
                         .where(AdminUser.id == user_id)).first()
    if row is None:
        session.clear()
        return
    user, tenant_enabled = row
    if (user.session_version != version or is_disabled(user.password_hash)
            or (user.tenant_id is not None and not tenant_enabled)):
        session.clear()
        return
    g.admin_user = CurrentUser(user.id, user.username, user.role, user.tenant_id, user.employee_id)


def remember_session_version(version: int) -> None:
    """After changing one's own password: keep this session (the others end)."""
    session[SESSION_VERSION] = version


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


LOGIN_PAGE = """<!doctype html>
<html><head><title>PBX admin: log in</title></head>
<body>
<h1>Cloud PBX administration</h1>
{% if error %}<p class="error" style="color:#b00">{{ error }}</p>{% endif %}
<form method="post">
  {{ form.csrf_token }}
  <p>{{ form.username.label }} {{ form.username(autofocus=true) }}</p>
  <p>{{ form.password.label }} {{ form.password() }}</p>
  <p><button type="submit">Log in</button></p>
</form>
</body></html>
"""


def _safe_next(target: str | None) -> str:
    if target and not urlparse(target).netloc and target.startswith("/"):
        return target
    return url_for("admin.index")


def _refusal(db_session: Session | scoped_session, user: AdminUser | None, password: str) -> str | None:
    """Why these credentials do not log in, or None when they do."""
    if user is None:
        password_matches(dummy_hash(), password)  # the same cost as a known username
        return "Wrong username or password."
    if not password_matches(user.password_hash, password):
        return "Wrong username or password."
    if is_disabled(user.password_hash):
        return "This account is disabled; ask your administrator."
    if user.tenant_id is not None:
        tenant = db_session.get(Tenant, user.tenant_id)
        if tenant is None or not tenant.enabled:
            return "Your company's account is suspended; ask your operator."
    return None


def make_blueprint(db_session: scoped_session, throttle: LoginThrottle) -> Blueprint:
    bp = Blueprint("auth", __name__)

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> str | Response | tuple[str, int]:
        form = LoginForm()
        error = None
        if form.validate_on_submit():
            username = form.username.data or ""
            address = request.remote_addr or ""
            if throttle.blocked(username, address):
                minutes = throttle.window_seconds // 60
                error = ("Too many failed logins for %s. Wait %d minutes and try again, or ask your "
                         "administrator to reset your password." % (username, minutes))
                return render_template_string(LOGIN_PAGE, form=form, error=error), 429
            user = db_session.scalar(select(AdminUser).where(AdminUser.username == username))
            error = _refusal(db_session, user, form.password.data or "")
            if error is None and user is not None:
                throttle.reset(username, address)
                session.clear()
                session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME
                session[SESSION_USER] = user.id
                session[SESSION_VERSION] = user.session_version or 0
                return redirect(_safe_next(request.args.get("next")))
            throttle.record_failure(username, address)
        elif request.method == "POST":
            error = "Please fill in both fields."
        return render_template_string(LOGIN_PAGE, form=form, error=error)

    @bp.route("/logout", methods=["POST"])  # CSRF-protected like every POST (CSRFProtect)
    def logout() -> Response:
        user = current_user()
        if user is not None:
            row = db_session.get(AdminUser, user.id)
            if row is not None:
                new_session_version(row)
                db_session.commit()
        session.clear()
        return redirect(url_for("auth.login"))

    return bp
