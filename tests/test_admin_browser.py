"""Smoke test in a real headless browser (Debian's chromium + chromedriver, selenium):
log in, create a department with members, see it listed; a screenshot is saved to
``test-artifacts/``. Skipped, saying why, when chromium or selenium is not installed
(CI must install them: ``apt-get install chromium chromium-driver``, ``pip install selenium``)."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_panel import DEMO

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def factory(migrated_pg: sessionmaker) -> Iterator[sessionmaker]:
    f = migrated_pg
    with f.begin() as s:
        demo = import_tenant(s, DEMO)
        s.add(db.AdminUser(username="demo-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=demo,
                           password_hash=generate_password_hash("demo-admin-secret")))
    yield f


@pytest.fixture
def base_url(factory: sessionmaker) -> Iterator[str]:
    app = create_app(Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40), factory)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_port
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_log_in_create_a_department_with_members_and_see_it_listed(
        base_url: str, browser: object, factory: sessionmaker) -> None:
    driver = browser
    wait = WebDriverWait(driver, 15)  # type: ignore[arg-type]
    driver.get(base_url + "/login")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "username").send_keys("demo-admin")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "password").send_keys("demo-admin-secret")  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # type: ignore[attr-defined]
    wait.until(ec.url_contains("/admin/"))

    driver.get(base_url + "/admin/department/new/")  # type: ignore[attr-defined]
    wait.until(ec.presence_of_element_located((By.NAME, "name"))).send_keys("Browser Desk")
    driver.find_element(By.NAME, "extension").send_keys("400")  # type: ignore[attr-defined]
    with factory() as s:
        members = [s.scalars(select(db.Employee.id).where(db.Employee.extension == ext)).one()
                   for ext in ("103", "104")]
    # Members are added inline with the form's "Add" button (a data-pbx-add-inline
    # attribute: the CSP allows no inline onclick); the employee is picked in the hidden
    # input behind the searched (AJAX) select2 widget.
    for i, employee_id in enumerate(members):
        driver.find_element(By.CSS_SELECTOR, "a[data-pbx-add-inline]").click()  # type: ignore[attr-defined]
        new_picker = (By.CSS_SELECTOR, "input[name$='-employee']:not([data-done])")
        picker = wait.until(ec.presence_of_element_located(new_picker))
        driver.execute_script(  # type: ignore[attr-defined]
            "var s = arguments[0]; s.value = arguments[1]; s.setAttribute('data-done', '1');"
            "s.dispatchEvent(new Event('change', {bubbles: true}));", picker, str(employee_id))
    driver.find_element(By.CSS_SELECTOR, "form.admin-form input[type=submit]").click()  # type: ignore[attr-defined]
    wait.until(ec.url_contains("/admin/department/"))
    wait.until(ec.presence_of_element_located((By.XPATH, "//td[contains(., 'Browser Desk')]")))
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "admin-department-list.png"))  # type: ignore[attr-defined]
    with factory() as s:
        dep = s.scalars(select(db.Department).where(db.Department.name == "Browser Desk")).one()
        assert dep.extension == "400" and sorted(m.employee_id for m in dep.members) == sorted(members)


def test_generate_a_sip_password_and_see_it_once(base_url: str, browser: object, factory: sessionmaker) -> None:
    driver = browser
    wait = WebDriverWait(driver, 15)  # type: ignore[arg-type]
    driver.get(base_url + "/login")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "username").send_keys("demo-admin")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "password").send_keys("demo-admin-secret")  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # type: ignore[attr-defined]
    wait.until(ec.url_contains("/admin/"))
    with factory() as s:
        ivan = s.scalars(select(db.Employee).where(db.Employee.extension == "101")).one()
    driver.get(base_url + "/admin/employee/details/?id=%d" % ivan.id)  # type: ignore[attr-defined]
    button = wait.until(ec.element_to_be_clickable((By.XPATH, "//button[contains(., 'Generate new SIP password')]")))
    button.click()
    wait.until(ec.alert_is_present()).accept()  # "Replace the SIP password of 101? ..."
    shown = wait.until(ec.presence_of_element_located((By.ID, "sip-password"))).text
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "admin-sip-password-once.png"))  # type: ignore[attr-defined]
    with factory() as s:
        assert s.get(db.Employee, ivan.id).sip_password == shown != ivan.sip_password
    driver.back()  # type: ignore[attr-defined]
    driver.get(base_url + "/admin/employee/details/?id=%d" % ivan.id)  # type: ignore[attr-defined]
    assert shown not in driver.page_source  # type: ignore[attr-defined]
