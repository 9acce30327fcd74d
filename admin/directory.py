"""FreeSWITCH's SIP directory over HTTP for mod_xml_curl.

mod_xml_curl POSTs form fields such as ``section=directory``, ``tag_name=domain``,
``key_name=name``, ``key_value=<domain>``, ``user``, ``domain``, ``action`` (``sip_auth``,
``user_call``, ``message-count``...) and, when sofia loads domains at start,
``purpose=gateways`` or ``network-list``. We answer a user with its password and the
variables the orchestrator reads (``pbx_tenant_id``...), a domain-only lookup with an
empty but valid document, and anything unknown with ``<result status="not found"/>``.
Protected with HTTP basic auth; in development with no password set, from localhost only.
"""
from __future__ import annotations

import hmac
import xml.etree.ElementTree as ET

from flask import Blueprint, Response, request
from sqlalchemy import func, select
from sqlalchemy.orm import scoped_session

from orchestrator.config import Settings
from orchestrator.db.models import Tenant
from orchestrator.db.queries import SipUser, find_sip_user

USER_CONTEXT = "pbx-internal"
DIAL_STRING = (
    "{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@${dialed_domain}}"
    "${sofia_contact(*/${dialed_user}@${dialed_domain})}"
)
LOCALHOST = ("127.0.0.1", "::1")
# How long FreeSWITCH keeps a user's answer (``<user cacheable="ms">``). FreeSWITCH
# 1.10.12, switch_xml.c ``switch_xml_locate_user_merged``: a user element with
# ``cacheable`` is kept (merged with its domain's and group's params and variables) in
# an in-memory cache for that many ms, keyed by ("id", user, domain); the lookups of
# mod_dptools ``user/`` legs (user_outgoing_channel) and of sofia's digest
# authentication (sofia_reg_parse_auth) read it before asking mod_xml_curl. Without it
# every ``user/`` leg of a ring-all asked us over HTTP, one after the other (FreeSWITCH
# creates the legs of one bridge in turn): measured 10 legs started over ~60 ms, ~6.5 ms
# a leg (bench/realfs_bench.py). A registration (or a call) refills the entry when it
# has expired. The price: a changed SIP password, a removed employee or a new name
# reach FreeSWITCH only when the entry expires, or at once with
# ``fs_cli -x 'xml_flush_cache id <extension> <domain>'`` (no arguments: every entry).
USER_CACHE_MS = 300_000


def _xml(root: ET.Element) -> Response:
    body = ET.tostring(root, encoding="unicode")
    return Response(body, status=200, mimetype="text/xml")


def not_found() -> Response:
    doc = ET.Element("document", type="freeswitch/xml")
    section = ET.SubElement(doc, "section", name="result")
    ET.SubElement(section, "result", status="not found")
    return _xml(doc)


def _document(domain: str | None) -> tuple[ET.Element, ET.Element | None]:
    doc = ET.Element("document", type="freeswitch/xml")
    section = ET.SubElement(doc, "section", name="directory")
    if domain is None:
        return doc, None
    dom = ET.SubElement(section, "domain", name=domain)
    params = ET.SubElement(dom, "params")
    ET.SubElement(params, "param", name="dial-string", value=DIAL_STRING)
    return doc, dom


def user_document(user: SipUser) -> Response:
    doc, dom = _document(user.domain)
    assert dom is not None
    users = ET.SubElement(ET.SubElement(ET.SubElement(dom, "groups"), "group", name="default"), "users")
    entry = ET.SubElement(users, "user", id=user.extension, cacheable=str(USER_CACHE_MS))
    params = ET.SubElement(entry, "params")
    ET.SubElement(params, "param", name="password", value=user.password)
    variables = ET.SubElement(entry, "variables")
    for name, value in (
        ("user_context", USER_CONTEXT),
        ("effective_caller_id_name", user.name),
        ("effective_caller_id_number", user.extension),
        ("outbound_caller_id_number", user.outbound_caller_id or ""),
        ("pbx_tenant_id", str(user.tenant_id)),
        ("pbx_employee_id", str(user.employee_id)),
        ("pbx_domain", user.domain),
    ):
        ET.SubElement(variables, "variable", name=name, value=value)
    return _xml(doc)


def _authorized(settings: Settings) -> bool:
    if not settings.directory_password:
        return not settings.production and request.remote_addr in LOCALHOST
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    return hmac.compare_digest((auth.username or "").encode(), settings.directory_user.encode()) and \
        hmac.compare_digest((auth.password or "").encode(), settings.directory_password.encode())


def make_directory_blueprint(settings: Settings, db: scoped_session) -> Blueprint:
    bp = Blueprint("directory", __name__)

    @bp.route("/freeswitch/directory", methods=["GET", "POST"])
    def directory() -> Response:
        if not _authorized(settings):
            return Response("authentication required\n", status=401,
                            headers={"WWW-Authenticate": 'Basic realm="pbx-directory"'}, mimetype="text/plain")
        values = request.values
        if values.get("section", "directory") != "directory":
            return not_found()
        domain = (values.get("domain") or values.get("key_value") or "").strip().lower()
        user = (values.get("user") or "").strip()
        if values.get("purpose") in ("gateways", "network-list") or not domain:
            return _xml(_document(None)[0])  # nothing to add: empty but valid
        if not user:
            known = db.scalar(select(Tenant.id).where(func.lower(Tenant.sip_domain) == domain,
                                                      Tenant.enabled.is_(True)))
            return _xml(_document(domain)[0]) if known is not None else not_found()
        found = find_sip_user(db(), domain, user)
        return user_document(found) if found is not None else not_found()

    return bp
