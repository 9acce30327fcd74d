"""In a real headless browser (as ``test_admin_browser``): a number's work-hours target
is chosen by clicking and typing (the kind, then a searched list by name), not by id; the
fields the kind does not use are hidden. A screenshot is saved to ``test-artifacts/``."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from orchestrator.db import schema as db
from tests.test_admin_browser import ARTIFACTS, base_url, browser, factory  # noqa: F401  (fixtures)

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def test_pick_a_numbers_target_by_kind_and_name(base_url: str, browser: object,  # noqa: F811
                                                factory: sessionmaker) -> None:  # noqa: F811
    driver = browser
    wait = WebDriverWait(driver, 20)  # type: ignore[arg-type]
    driver.get(base_url + "/login")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "username").send_keys("demo-admin")  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "password").send_keys("demo-admin-secret")  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # type: ignore[attr-defined]
    wait.until(ec.url_contains("/admin/"))
    with factory() as s:
        number = s.scalars(select(db.PhoneNumber.id).where(db.PhoneNumber.e164 == "+74950000001")).one()
        ivan = s.scalars(select(db.Employee.id).where(db.Employee.extension == "101")).one()
    driver.get(base_url + "/admin/number/edit/?id=%d" % number)  # type: ignore[attr-defined]
    wait.until(ec.presence_of_element_located((By.ID, "work_kind")))
    # The kind: chosen in its select2 list as a user does (select2 sets the value and
    # fires "change" through jQuery).
    driver.execute_script("jQuery('#work_kind').val('employee').trigger('change');")  # type: ignore[attr-defined]
    wait.until(lambda d: "kind=employee" in d.find_element(By.ID, "work_ref_id").get_attribute("data-url"))
    assert not driver.find_element(By.ID, "work_number").is_displayed()  # type: ignore[attr-defined]
    # The row: open the searched list, type part of the name, click the match.
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#s2id_work_ref_id a.select2-choice"))).click()
    search = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#select2-drop input.select2-input")))
    search.send_keys("Petrov")
    match = wait.until(ec.element_to_be_clickable(
        (By.XPATH, "//div[@id='select2-drop']//li[contains(., '101 Ivan Petrov')]")))
    match.click()
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "admin-number-target-picker.png"))  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "form.admin-form input[type=submit]").click()  # type: ignore[attr-defined]
    wait.until(ec.url_contains("/admin/number/"))
    wait.until(ec.presence_of_element_located((By.XPATH, "//td[contains(., 'employee: 101 Ivan Petrov')]")))
    with factory() as s:
        row = s.get(db.PhoneNumber, number)
        assert (row.work_kind, row.work_ref_id) == ("employee", ivan)
