"""/freeswitch/directory answers mod_xml_curl like FreeSWITCH expects (real database)."""
from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.tenant_doc import import_tenant

DEMO = (Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml").read_text()
SIP_AUTH = {"section": "directory", "tag_name": "domain", "key_name": "name", "key_value": "demo.pbx.local",
            "Event-Name": "REQUEST_PARAMS", "action": "sip_auth", "sip_profile": "internal",
            "sip_user_agent": "Linphone", "sip_auth_username": "101", "sip_auth_realm": "demo.pbx.local",
            "user": "101", "domain": "demo.pbx.local"}


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker]:
    url = "sqlite:///%s" % (tmp_path / "dir.sqlite3")
    upgrade(url)
    engine = make_engine(url)
    f = make_session_factory(engine)
    with f.begin() as s:
        import_tenant(s, DEMO)
    yield f
    engine.dispose()


def make_app(factory: sessionmaker, password: str = "directory-secret-123") -> Flask:
    return create_app(Settings(directory_user="freeswitch", directory_password=password), factory)


def basic(user: str = "freeswitch", password: str = "directory-secret-123") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}


def test_known_user_gets_password_and_variables(factory: sessionmaker) -> None:
    client = make_app(factory).test_client()
    response = client.post("/freeswitch/directory", data=SIP_AUTH, headers=basic())
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ET.fromstring(response.data)
    with factory() as s:
        emp = s.scalars(select(db.Employee).where(db.Employee.extension == "101")).one()
    assert root.tag == "document" and root.get("type") == "freeswitch/xml"
    domain = root.find("./section[@name='directory']/domain")
    assert domain.get("name") == "demo.pbx.local"
    dial = domain.find("./params/param[@name='dial-string']").get("value")
    assert dial == ("{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@${dialed_domain}}"
                    "${sofia_contact(*/${dialed_user}@${dialed_domain})}")
    user = domain.find("./groups/group/users/user")
    assert user.get("id") == "101"
    assert user.find("./params/param[@name='password']").get("value") == emp.sip_password
    variables = {v.get("name"): v.get("value") for v in user.findall("./variables/variable")}
    assert variables["user_context"] == "pbx-internal"
    assert variables["effective_caller_id_number"] == "101"
    assert variables["pbx_tenant_id"] == str(emp.tenant_id)
    assert variables["outbound_caller_id_number"] == "+74950000001"


def test_user_answer_is_cacheable_so_ring_all_legs_do_not_each_ask_over_http(factory: sessionmaker) -> None:
    """``<user cacheable="ms">``: FreeSWITCH (switch_xml_locate_user_merged) keeps the
    merged user that long, for user/ legs and digest auth alike, instead of one HTTP
    lookup per leg of a ring-all, in turn (admin.directory.USER_CACHE_MS)."""
    from admin.directory import USER_CACHE_MS

    client = make_app(factory).test_client()
    for action in ("sip_auth", "user_call"):
        response = client.post("/freeswitch/directory", data={**SIP_AUTH, "action": action}, headers=basic())
        user = ET.fromstring(response.data).find("./section[@name='directory']/domain/groups/group/users/user")
        assert user is not None and user.get("cacheable") == str(USER_CACHE_MS)
    assert 10_000 <= USER_CACHE_MS <= 3_600_000  # long enough to matter, short enough for a password change


@pytest.mark.parametrize("fields", [
    {**SIP_AUTH, "user": "199", "sip_auth_username": "199"},
    {**SIP_AUTH, "domain": "other.example", "key_value": "other.example"},
    {**SIP_AUTH, "section": "dialplan"},
])
def test_unknown_user_domain_or_section_is_not_found(factory: sessionmaker, fields: dict[str, str]) -> None:
    client = make_app(factory).test_client()
    root = ET.fromstring(client.post("/freeswitch/directory", data=fields, headers=basic()).data)
    assert root.find("./section[@name='result']/result").get("status") == "not found"


def test_domain_only_lookups_get_an_empty_valid_document(factory: sessionmaker) -> None:
    client = make_app(factory).test_client()
    gateways = {"section": "directory", "purpose": "gateways", "profile": "internal"}
    root = ET.fromstring(client.post("/freeswitch/directory", data=gateways, headers=basic()).data)
    assert root.get("type") == "freeswitch/xml" and root.find("./section[@name='directory']") is not None
    assert root.find(".//user") is None
    domain_only = {"section": "directory", "action": "message-count", "domain": "demo.pbx.local"}
    root = ET.fromstring(client.post("/freeswitch/directory", data=domain_only, headers=basic()).data)
    assert root.find("./section/domain").get("name") == "demo.pbx.local" and root.find(".//user") is None


def test_credentials_are_required_when_a_password_is_set(factory: sessionmaker) -> None:
    client = make_app(factory).test_client()
    assert client.post("/freeswitch/directory", data=SIP_AUTH).status_code == 401
    assert client.post("/freeswitch/directory", data=SIP_AUTH, headers=basic(password="wrong")).status_code == 401
    assert client.post("/freeswitch/directory", data=SIP_AUTH, headers=basic(user="x")).status_code == 401
    assert b"password" not in client.post("/freeswitch/directory", data=SIP_AUTH).data


def test_without_a_password_only_localhost_is_served_in_development(factory: sessionmaker) -> None:
    client = make_app(factory, password="").test_client()
    assert client.post("/freeswitch/directory", data=SIP_AUTH).status_code == 200
    remote = client.post("/freeswitch/directory", data=SIP_AUTH, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert remote.status_code == 401
