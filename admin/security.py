"""Security headers of every panel response, and the client address behind proxies.

Content-Security-Policy: scripts only from the panel itself or inline with this
response's nonce (``csp_nonce()``, handed to Flask-Admin's templates as
``admin_csp_nonce_attribute``); no inline event handlers (``admin.pages`` replaces
Flask-Admin's few with ``data-pbx-*`` attributes). Styles allow ``'unsafe-inline'``:
select2 and Bootstrap's JavaScript set ``style`` on elements (a style cannot run code).
Nothing may frame the panel (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``).
HSTS only on responses served over TLS (``request.is_secure``: directly, or behind a
trusted proxy that says so in ``X-Forwarded-Proto``).

Behind a reverse proxy the socket's peer is the proxy: ``PBX_TRUSTED_PROXIES`` (the
number of proxies in front of the panel) makes werkzeug's ``ProxyFix`` take the client
address from that many ``X-Forwarded-For`` entries, counted from the right (the ones the
trusted proxies appended; anything a client wrote further left is ignored). Without it
``X-Forwarded-For`` is ignored, so a client cannot choose the address its failed logins
are counted against.
"""
from __future__ import annotations

import secrets

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

HSTS = "max-age=31536000; includeSubDomains"


def csp_nonce() -> str:
    """This request's script nonce (made on first use)."""
    nonce = g.get("pbx_csp_nonce")
    if nonce is None:
        nonce = g.pbx_csp_nonce = secrets.token_urlsafe(18)
    return nonce


def content_security_policy(nonce: str | None) -> str:
    scripts = "'self' 'nonce-%s'" % nonce if nonce else "'self'"
    return ("default-src 'self'; script-src %s; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
            "form-action 'self'; frame-ancestors 'none'" % scripts)


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(g.get("pbx_csp_nonce")))
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def install(app: Flask, trusted_proxies: int) -> None:
    """Security headers on every response of ``app``; ``trusted_proxies`` proxies' headers
    believed (0: none)."""
    app.after_request(add_security_headers)
    if trusted_proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies)  # type: ignore[method-assign]
