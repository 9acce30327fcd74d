"""One tenant's size cannot take the panel or the SIP directory down for everyone:
member pickers are searched (AJAX, at most 20 rows a lookup) instead of one <option>
per employee per member row, and the directory runs in its own process, which answers
while a panel page is held busy."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from admin.directory_server import create_directory_app
from admin.scoping import AJAX_PAGE_SIZE
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_panel import DEMO, TOKEN

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = 700
SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40,
                    directory_password="directory-secret-123")


def big_tenant(members: int) -> str:
    employees = "\n".join('  - {name: "Worker %d", extension: "%d"}' % (i, 1000 + i) for i in range(members))
    listed = ", ".join('{employee: "%d"}' % (1000 + i) for i in range(members))
    return ("tenant: {name: Big Corp, sip_domain: big.example}\nemployees:\n%s\n"
            "departments:\n  - {name: Everyone, extension: \"500\", members: [%s]}\n" % (employees, listed))


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker]:
    url = "sqlite:///%s" % (tmp_path / "big.sqlite3")
    upgrade(url)
    engine = make_engine(url)
    f = make_session_factory(engine)
    with f.begin() as s:
        big = import_tenant(s, big_tenant(MEMBERS))
        import_tenant(s, DEMO)
        s.add(db.AdminUser(username="big-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=big,
                           password_hash=generate_password_hash("big-admin-secret")))
    yield f
    engine.dispose()


def logged_in(app: Flask, username: str, password: str) -> object:
    client = app.test_client()
    token = TOKEN.search(client.get("/login").get_data(as_text=True)).group(1)
    assert client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token}).status_code == 302
    return client


def test_a_department_of_700_members_renders_a_bounded_edit_page(factory: sessionmaker) -> None:
    app = create_app(SETTINGS, factory)
    client = logged_in(app, "big-admin", "big-admin-secret")
    with factory() as s:
        dep = s.scalars(select(db.Department).where(db.Department.name == "Everyone")).one()
        dep_id, member_count = dep.id, len(dep.members)
        box_owner_page = s.scalar(select(db.Employee.id).where(db.Employee.extension == "1000"))
    assert member_count == MEMBERS
    html = client.get("/admin/department/edit/?id=%d" % dep_id).get_data(as_text=True)
    # before: one <option> per employee per member row (700 x 700 = 490,000; 25 MB)
    assert html.count("<option") < 100
    assert len(html) < 2_000_000  # ~2.3 KB per member row
    assert len(re.findall(r'name="members-\d+-employee"', html)) == MEMBERS
    assert html.count('data-role="select2-ajax"') >= MEMBERS
    for page in ("/admin/account/new/", "/admin/employee/edit/?id=%d" % box_owner_page,
                 "/admin/voicemail_box/new/"):
        assert client.get(page).get_data(as_text=True).count("<option") < 100, page


def test_the_member_lookup_answers_at_most_a_page_of_the_tenants_rows(factory: sessionmaker) -> None:
    app = create_app(SETTINGS, factory)
    client = logged_in(app, "big-admin", "big-admin-secret")
    url = "/admin/department/ajax/lookup/?name=departmentmember-employee&query=%s&limit=%d"
    found = client.get(url % ("", 100_000)).json
    assert len(found) == AJAX_PAGE_SIZE
    assert [label for _, label in client.get(url % ("1699", 10)).json] == ["1699 Worker 699"]
    assert client.get(url % ("Ivan", 10)).json == []  # the demo tenant's Ivan Petrov: not this tenant's


# ------------------------------------------------------------- directory in its own process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # it answered (401 without credentials)
    except OSError:
        return False
    return True


def directory_lookup(port: int, timeout: float) -> str:
    body = urllib.parse.urlencode({"section": "directory", "tag_name": "domain", "key_name": "name",
                                   "key_value": "demo.pbx.local", "action": "sip_auth", "user": "101",
                                   "domain": "demo.pbx.local"}).encode()
    request = urllib.request.Request("http://127.0.0.1:%d/freeswitch/directory" % port, data=body, headers={
        "Authorization": "Basic " + b64encode(b"freeswitch:directory-secret-123").decode()})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode()


def test_the_directory_answers_while_a_panel_page_is_held_busy(fresh_pg_url: str, redis_url: str,
                                                                tmp_path: Path) -> None:
    upgrade(fresh_pg_url)
    engine = make_engine(fresh_pg_url)
    with make_session_factory(engine).begin() as s:
        import_tenant(s, DEMO)
    panel_port, directory_port = free_port(), free_port()
    env = {**os.environ, "PBX_ENV": "development", "DATABASE_URL": fresh_pg_url, "REDIS_URL": redis_url,
           "PBX_DATA_DIR": str(tmp_path), "PBX_ADMIN_LISTEN": "127.0.0.1:%d" % panel_port,
           "PBX_DIRECTORY_LISTEN": "127.0.0.1:%d" % directory_port, "PBX_ADMIN_PASSWORD": "operator-secret-1",
           "PBX_DIRECTORY_PASSWORD": "directory-secret-123", "PBX_ADMIN_SECRET_KEY": "y" * 40}
    log = (tmp_path / "pbx-admin.log").open("w")
    admin = subprocess.Popen([sys.executable, "-m", "admin.cli"], cwd=ROOT, env=env, stdout=log, stderr=log)
    panel = "http://127.0.0.1:%d" % panel_port
    locker = engine.connect()
    try:
        wait_for(lambda: answers(panel + "/login") and answers("http://127.0.0.1:%d/freeswitch/directory"
                                                                % directory_port), "pbx-admin to start")
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        token = TOKEN.search(browser.open(panel + "/login", timeout=30).read().decode()).group(1)
        browser.open(panel + "/login", data=urllib.parse.urlencode(
            {"username": "operator", "password": "operator-secret-1", "csrf_token": token}).encode(), timeout=30)

        # Hold a panel page busy: its query waits for a lock this test holds. psycopg2
        # waits blocking the panel process's gevent hub, as a slow render would.
        transaction = locker.begin()
        locker.execute(text("LOCK TABLE department IN ACCESS EXCLUSIVE MODE"))
        page: dict[str, int] = {}
        request = threading.Thread(target=lambda: page.update(
            status=browser.open(panel + "/admin/department/", timeout=120).status), daemon=True)
        request.start()

        def page_waits() -> bool:
            with engine.connect() as conn:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND query ILIKE '%department%'")).scalar())

        wait_for(page_waits, "the panel page to wait for the lock")
        document = directory_lookup(directory_port, timeout=30)
        assert '<user id="101"' in document and 'name="password"' in document
        assert page_waits() and not page  # the page was still held busy while the directory answered
        transaction.rollback()
        request.join(timeout=60)
        assert page == {"status": 200}
    finally:
        locker.close()
        admin.send_signal(signal.SIGTERM)
        try:
            admin.wait(timeout=30)
        finally:
            if admin.poll() is None:
                admin.kill()
            log.close()
            engine.dispose()
    # pbx-admin's directory process goes with it
    wait_for(lambda: not answers("http://127.0.0.1:%d/freeswitch/directory" % directory_port),
             "the directory process to stop")


def test_directory_app_alone_serves_only_the_directory(factory: sessionmaker) -> None:
    app = create_directory_app(SETTINGS, factory)
    client = app.test_client()
    auth = {"Authorization": "Basic " + b64encode(b"freeswitch:directory-secret-123").decode()}
    found = client.post("/freeswitch/directory", headers=auth, data={
        "section": "directory", "user": "101", "domain": "demo.pbx.local", "action": "sip_auth"})
    assert found.status_code == 200 and '<user id="101"' in found.get_data(as_text=True)
    assert client.post("/freeswitch/directory", data={"user": "101", "domain": "demo.pbx.local"}).status_code == 401
    assert client.get("/login").status_code == 404 and client.get("/admin/").status_code == 404


def test_pbx_admin_restarts_its_directory_process(redis_url: str, tmp_path: Path) -> None:
    panel_port, directory_port = free_port(), free_port()
    env = {**os.environ, "PBX_ENV": "development", "REDIS_URL": redis_url, "PBX_DATA_DIR": str(tmp_path),
           "PBX_ADMIN_LISTEN": "127.0.0.1:%d" % panel_port, "PBX_DIRECTORY_LISTEN": "127.0.0.1:%d" % directory_port,
           "PBX_DIRECTORY_PASSWORD": "directory-secret-123"}
    env.pop("DATABASE_URL", None)  # the embedded SQLite file, seeded with the demo tenant
    log_path = tmp_path / "pbx-admin.log"
    log = log_path.open("w")
    admin = subprocess.Popen([sys.executable, "-m", "admin.cli"], cwd=ROOT, env=env, stdout=log, stderr=log)
    started = re.compile(r"directory process started \(pid (\d+)\)")
    try:
        wait_for(lambda: len(started.findall(log_path.read_text())) == 1, "the directory process to start")
        wait_for(lambda: answers("http://127.0.0.1:%d/freeswitch/directory" % directory_port), "the directory")
        (first,) = started.findall(log_path.read_text())
        os.kill(int(first), signal.SIGKILL)
        wait_for(lambda: len(started.findall(log_path.read_text())) == 2, "the directory process to be restarted")
        wait_for(lambda: answers("http://127.0.0.1:%d/freeswitch/directory" % directory_port),
                 "the restarted directory")
        assert '<user id="101"' in directory_lookup(directory_port, timeout=30)
        assert "directory process exited with status -9; restarting" in log_path.read_text()
    finally:
        admin.send_signal(signal.SIGTERM)
        try:
            admin.wait(timeout=30)
        finally:
            if admin.poll() is None:
                admin.kill()
            log.close()
    assert admin.returncode == 0
    wait_for(lambda: not answers("http://127.0.0.1:%d/freeswitch/directory" % directory_port),
             "the directory process to stop")
