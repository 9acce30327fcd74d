"""Asking a tenant's CRM who is responsible for a caller (caller rule ``match: crm``).

The contract, for the tenant's developers (also in docs/operations.md):

    GET <url>?caller=%2B78121234567&number=%2B74950000001&tenant=demo.pbx.local
    Accept: application/json

    200 {"extension": "102"}             the responsible employee's extension: they ring
                                         first (if logged in), then the rule's target
    200 {"extension": null}, 200 {}, 404 the caller is unknown: the rule's target

``caller`` is the caller's number in E.164 (as received when it does not parse),
``number`` the tenant's number that was called, ``tenant`` its SIP domain. Any other
status, a body that is not that JSON (at most 64 KiB), a connection error or no complete
answer within the rule's ``timeout_ms`` (100-1500 ms) counts as *no answer*: the caller
follows the rule's target, and the orchestrator logs why. The CRM is asked with GET,
nothing else is sent; the URL may carry the CRM's own key in its query string.

The request runs on gevent's sockets whatever the process patched, under one
``gevent.Timeout`` covering DNS, connect, TLS, request and response: a slow CRM never
holds a call longer than its timeout.

The URL is a tenant admin's input, so the orchestrator only connects to public
addresses: the host is resolved, every address checked (no loopback, private,
link-local, multicast or reserved ones) and the connection made to a checked address,
not to a second resolution (no DNS rebinding). ``PBX_CRM_ALLOW_PRIVATE=1`` lifts this for
deployments whose CRMs live on the operator's own network.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode, urlsplit

import gevent
import gevent.socket
import gevent.ssl

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
USER_AGENT = "cloudpbx-crm-lookup/1"

# (url, timeout seconds) -> (HTTP status, body); raises OSError/HTTPException on failure.
Fetch = Callable[[str, float], "tuple[int, bytes]"]


class BlockedAddress(OSError):
    """The CRM's host is (or resolves to) an address the orchestrator must not reach."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def checked_connection(host: str, port: int, timeout: float, allow_private: bool) -> socket.socket:
    """A gevent socket connected to ``host``: every address it resolves to is checked
    first, and the connection goes to those checked addresses (not to a new lookup)."""
    infos = gevent.socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if not allow_private:
        blocked = sorted({info[4][0] for info in infos if not _public(info[4][0])})
        if blocked:
            raise BlockedAddress("%s is a private or local address (%s); set PBX_CRM_ALLOW_PRIVATE=1 to allow it"
                                 % (host, ", ".join(blocked)))
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = gevent.socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError("%s: no address" % host)


class _Connection(http.client.HTTPConnection):
    """HTTP over a gevent socket (cooperative even without monkey-patching)."""

    allow_private = False

    def connect(self) -> None:
        self.sock = checked_connection(self.host, self.port, self.timeout or 5.0, self.allow_private)


class _TlsConnection(http.client.HTTPSConnection):
    allow_private = False

    def connect(self) -> None:
        raw = checked_connection(self.host, self.port, self.timeout or 5.0, self.allow_private)
        self.sock = gevent.ssl.create_default_context().wrap_socket(raw, server_hostname=self.host)


def http_get(url: str, timeout_s: float, allow_private: bool = False) -> tuple[int, bytes]:
    """One GET; the caller bounds the whole exchange with a gevent.Timeout."""
    parts = urlsplit(url)
    cls = _TlsConnection if parts.scheme == "https" else _Connection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout_s)
    conn.allow_private = allow_private
    try:
        path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        conn.request("GET", path, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
        response = conn.getresponse()
        return response.status, response.read(MAX_BODY + 1)
    finally:
        conn.close()


@dataclass(frozen=True)
class CrmAnswer:
    extension: str | None  # the responsible employee's extension; None: unknown or no answer
    note: str  # for the call's route and the explainer
    answered: bool  # False: the CRM failed or was too slow (logged)
    elapsed_ms: int = 0


def lookup_url(url: str, caller: str, number: str, tenant: str) -> str:
    query = urlencode({"caller": caller, "number": number, "tenant": tenant})
    return url + ("&" if urlsplit(url).query else "?") + query


def _extension(status: int, body: bytes) -> tuple[str | None, str] | None:
    """(extension, note) from a CRM reply, or None when it breaks the contract."""
    if status == 404:
        return None, "CRM: unknown caller"
    if status != 200 or len(body) > MAX_BODY:
        return None
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("extension")
    if value is None or value == "":
        return None, "CRM: unknown caller"
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isdigit() or len(value) > 6:
        return None
    return value, "CRM names extension %s" % value


class CrmClient:
    def __init__(self, fetch: Fetch | None = None, clock: Callable[[], float] = time.monotonic,
                 allow_private: bool = False) -> None:
        self.fetch: Fetch = fetch or (lambda url, timeout_s: http_get(url, timeout_s, allow_private))
        self.clock = clock

    def responsible(self, url: str, timeout_ms: int, caller: str, number: str, tenant: str) -> CrmAnswer:
        """Who the CRM names for ``caller``, within ``timeout_ms``; never raises."""
        started = self.clock()
        timeout_s = max(0.05, timeout_ms / 1000.0)
        timer = gevent.Timeout(timeout_s)
        timer.start()
        try:
            # The socket's own timeout only backs the gevent timer up.
            status, body = self.fetch(lookup_url(url, caller, number, tenant), timeout_s + 1.0)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            return self._failed("CRM did not answer within %d ms" % timeout_ms, started)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return self._failed("CRM failed: %s" % (exc.__class__.__name__ if not str(exc) else exc), started)
        finally:
            timer.close()
        found = _extension(status, body)
        elapsed = int((self.clock() - started) * 1000)
        if found is None:
            return self._failed("CRM failed: HTTP %d, not the expected JSON" % status if status == 200
                                else "CRM failed: HTTP %d" % status, started)
        return CrmAnswer(found[0], found[1], True, elapsed)

    def _failed(self, note: str, started: float) -> CrmAnswer:
        return CrmAnswer(None, note, False, int((self.clock() - started) * 1000))
