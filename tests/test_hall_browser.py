"""Headless Chromium drives the hall's pages: sign in, find a walk-in applicant by a name written
in traditional characters (no ID card), see the prefilled form's locks and waived papers, submit,
decide the village (and street) task as their officers, promote, and see the new value in master."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hall_support import PASSWORDS, seeded_hall, serving

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
PG_URL = os.environ.get("GOVDB_TEST_PG_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.pg])])
def base_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("GOVDB_TEST_PG_URL is not set")
    with seeded_hall(request.param, tmp_path, PG_URL) as (hall, report), serving(hall) as url:
        yield url, report.applicant


def test_a_walk_in_registration_through_the_pages(base_url: tuple[str, dict[str, str]]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, applicant = base_url
    new_phone = "13700005555"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_context(locale="zh-CN").new_page()

        def sign_in(username: str) -> None:
            page.goto(f"{url}/")
            expect(page).to_have_url(f"{url}/signin?next=/")
            page.fill("#username", username)
            page.fill("#password", PASSWORDS[username])
            page.click("button[type=submit]")
            expect(page.locator("#who")).to_be_visible()

        def sign_out() -> None:
            page.click("header button")
            expect(page).to_have_url(f"{url}/signin")

        sign_in("window1")
        expect(page).to_have_url(f"{url}/window")
        assert applicant["name"] != applicant["name"].translate(str.maketrans("劉張陳", "刘张陈"))
        page.fill("#name", applicant["name"])  # traditional characters, no ID number
        page.fill("#birth_date", applicant["birth_date"])
        page.fill("#address", applicant["address"])
        page.get_by_role("button", name="查找", exact=True).click()
        expect(page.locator("#decision")).to_have_text("match")
        expect(page.locator("#explanation")).to_contain_text("name")
        expect(page.locator("#person")).to_contain_text(applicant["id_number"])

        page.click("text=填写《老年人免费乘车卡申请表》")
        expect(page.locator("h1")).to_have_text("老年人免费乘车卡申请表")
        expect(page.locator('tr[data-field="id_number"]')).to_have_class("locked")
        expect(page.locator('tr[data-field="name"] .tag').first).to_have_text("锁定")
        expect(page.locator('tr[data-field="phone"]')).to_have_class("editable")
        expect(page.locator("#waived")).to_contain_text("居民身份证复印件")
        expect(page.locator("#waived")).to_contain_text("户口簿复印件")
        expect(page.locator("#missing")).to_contain_text("近期免冠照片")
        assert page.locator('tr[data-field="id_number"] input').count() == 0  # locked: not editable
        page.fill('input[name="phone"]', new_phone)
        page.get_by_role("button", name="提交登记").click()
        expect(page.locator("#app_no")).to_have_text(__import__("re").compile(r"^H\d{14}"))
        expect(page.locator("#proposals")).to_have_text("1")
        sign_out()

        for officer in ("village1", "street1"):  # the route of an update: village, then street
            sign_in(officer)
            row = page.locator("#tasks tr", has_text=new_phone)
            expect(row).to_have_count(1)
            row.get_by_role("button", name="通过", exact=True).click()
            expect(page.locator("#done")).to_contain_text("1")
            expect(page.locator("#tasks tr", has_text=new_phone)).to_have_count(0)
            sign_out()

        sign_in("bureau1")
        page.get_by_role("button", name="立即入库").click()
        expect(page.locator("#promoted")).to_contain_text("入库 1 项")
        sign_out()

        sign_in("window1")
        page.fill("#id_number", applicant["id_number"])
        page.get_by_role("button", name="查找", exact=True).click()
        page.click("text=填写《老年人免费乘车卡申请表》")
        phone_row = page.locator('tr[data-field="phone"]')
        expect(phone_row.locator("input")).to_have_value(new_phone)
        expect(phone_row).to_contain_text("service_hall")
        expect(phone_row).to_contain_text("village:")
        browser.close()
