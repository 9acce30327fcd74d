"""One click on an employee's page sets a new strong SIP password and shows it once.

``POST /admin/employee/sip-password/?id=<employee>`` (CSRF token; the tenant's own
employees only, anything else is 404) stores a password from
``generate_sip_password`` (the next registration needs it: the SIP directory serves the
new one at once) and answers with a page that shows it, not cached by the browser; it
is never listed, shown in forms or exported afterwards. With ``email_it`` the employee
also gets their SIP user, domain and password by e-mail through the deployment's SMTP
server (``PBX_SMTP_*``); when there is none, or the mail fails, the page says so and the
password is still shown.
"""
from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from typing import Any

from flask import current_app, make_response, request
from flask_admin import expose
from werkzeug.wrappers import Response

from orchestrator.config import Settings
from orchestrator.db.base import generate_sip_password
from orchestrator.db.models import Employee
from workers.mail import send

log = logging.getLogger(__name__)


def credentials_message(employee: Employee, domain: str, password: str, sender: str) -> EmailMessage:
    """The e-mail telling ``employee`` how their phone registers."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = employee.email or ""
    msg["Subject"] = "Your phone's new SIP password (extension %s)" % employee.extension
    msg.set_content("\n".join([
        "Hello %s," % employee.name,
        "",
        "your phone (extension %s) now registers with:" % employee.extension,
        "",
        "SIP user:  %s" % employee.extension,
        "Domain:    %s" % domain,
        "Password:  %s" % password,
        "",
        "Enter these in your desk phone or softphone; the old password no longer works.",
        "Keep this password to yourself and delete this e-mail once the phone is set up.",
    ]) + "\n")
    return msg


def mail_credentials(settings: Settings, employee: Employee, domain: str, password: str) -> tuple[bool, str]:
    """E-mail the credentials: (sent, what to tell the admin)."""
    if not employee.email:
        return False, ("Not e-mailed: %s %s has no e-mail address. Give the password to them yourself."
                       % (employee.extension, employee.name))
    if not settings.smtp_host:
        return False, ("Not e-mailed: this deployment has no mail server configured (PBX_SMTP_HOST is empty). "
                       "Give the password to the employee yourself.")
    try:
        send(credentials_message(employee, domain, password, settings.smtp_from), settings)
    except (smtplib.SMTPException, OSError) as exc:
        log.warning("tenant %d: SIP credentials of employee %d not e-mailed: %s", employee.tenant_id,
                    employee.id, exc)
        return False, ("Not e-mailed: the mail server %s:%d did not take the message (%s). The new password "
                       "is in effect; give it to the employee yourself." % (settings.smtp_host, settings.smtp_port, exc))
    return True, "E-mailed to %s." % employee.email


class SipPasswordAction:
    """Mixin for the employee view (a ``TenantScopedView``): the one-click action."""

    get_one: Any
    session: Any
    user: Any
    render: Any

    @expose("/sip-password/", methods=("POST",))
    def sip_password(self) -> Response:
        employee: Employee = self.get_one(request.args.get("id") or request.form.get("id"))
        password = generate_sip_password()
        employee.sip_password = password
        domain = employee.tenant.sip_domain
        self.session.commit()  # bumps the tenant's routing version: the directory serves it now
        log.info("tenant %d: new SIP password for employee %d set by %s", employee.tenant_id, employee.id,
                 self.user.username)
        mailed, mail_note = False, ""
        if request.form.get("email_it"):
            mailed, mail_note = mail_credentials(current_app.extensions["pbx_settings"], employee, domain, password)
        response = make_response(self.render("pbx/sip_password.html", employee=employee, domain=domain,
                                             password=password, mailed=mailed, mail_note=mail_note))
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response
