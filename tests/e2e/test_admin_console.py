"""The admin console at ``/admin``, driven in Chromium against the real stack.

An admin reaches it from the main page, sees users, jobs, queues, storage and the
audit log, disables a user (who is then refused at login) and deletes one after
confirming; anyone else sees "Admins only".
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta

import pika
import pytest
import requests

from common.messaging import connection_parameters, dead_letter_queue
from tests.e2e.test_web import ARTIFACTS, log_in, new_tab
from tests.support.deadletters import job_message
from tests.support.quotas import jobs_inserted
from tests.support.system import ADMIN, new_user

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the browser fixture (tests/e2e/conftest.py) says so
    Page = expect = None

pytestmark = pytest.mark.slow


def open_console(page: Page) -> None:
    """Log in as the stack's admin on the main page and follow its link to the console."""
    log_in(page, *ADMIN)
    link = page.get_by_role("link", name="Admin console")
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(r"/admin$"))
    expect(page.get_by_role("heading", name="Users")).to_be_visible()


def user_row(page: Page, email: str):
    return page.locator("#users tbody tr").filter(
        has=page.get_by_role("cell", name=email, exact=True)
    )


def test_an_admin_sees_the_system_disables_a_user_and_the_audit_shows_it(browser, system, tmp_path):
    target, bystander = new_user(system), new_user(system)
    failed = "The file has no audio track."
    with jobs_inserted(system, target.email, 1, status="failed", age=timedelta(minutes=1)) as ids:
        system.videos["jobs"].update_one({"_id": ids[0]}, {"$set": {"error": failed}})
        with new_tab(browser, system.gateway) as page:
            open_console(page)
            page.get_by_label("Search by email").fill(target.email)
            page.get_by_role("button", name="Search").click()
            row = user_row(page, target.email)
            expect(row).to_contain_text("active")
            expect(row).to_contain_text("0 / 1")  # active / all jobs

            page.get_by_label("Owner").fill(target.email)
            page.get_by_role("button", name="Filter").click()
            expect(page.locator("#jobs tbody")).to_contain_text(failed)
            expect(page.locator("#queues tbody tr")).to_have_count(3)
            expect(page.locator("#queues tbody")).to_contain_text("video")
            expect(page.locator("#storage tbody")).to_contain_text("videos")
            expect(page.locator("#job-states tbody")).to_contain_text("failed")

            row.get_by_role("button", name="Disable").click()
            expect(page.locator("#notice")).to_contain_text(f"{target.email} is disabled.")
            expect(user_row(page, target.email)).to_contain_text("disabled")
            audit = page.locator("#audit tbody tr").first
            expect(audit).to_contain_text("user.disable")
            expect(audit).to_contain_text(target.email)
            expect(audit).to_contain_text(ADMIN[0])

            # Deleting asks first: dismissed, nothing happens; accepted, the user goes.
            page.get_by_label("Search by email").fill(bystander.email)
            page.get_by_role("button", name="Search").click()
            page.once("dialog", lambda dialog: dialog.dismiss())
            user_row(page, bystander.email).get_by_role("button", name="Delete").click()
            expect(user_row(page, bystander.email)).to_have_count(1)
            page.once("dialog", lambda dialog: dialog.accept())
            user_row(page, bystander.email).get_by_role("button", name="Delete").click()
            expect(page.locator("#notice")).to_contain_text(f"{bystander.email} and their files")
            expect(user_row(page, bystander.email)).to_have_count(0)
            expect(page.locator("#audit tbody tr").first).to_contain_text("user.delete")

            page.get_by_label("Search by email").fill("")
            page.get_by_role("button", name="Search").click()
            expect(user_row(page, ADMIN[0])).to_be_visible()  # the first page, by address
            shot = tmp_path / "admin-console.png"
            page.screenshot(path=shot, full_page=True)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(shot, ARTIFACTS / "admin-console.png")

    login = requests.post(
        f"{system.gateway}/login", auth=(target.email, target.password), timeout=30
    )
    assert login.status_code in (401, 403), login.text
    gone = requests.post(
        f"{system.gateway}/login", auth=(bystander.email, bystander.password), timeout=30
    )
    assert gone.status_code == 401


def test_anyone_else_sees_admins_only(browser, system):
    user = new_user(system)
    with new_tab(browser, system.gateway) as page:
        log_in(page, user.email, user.password)
        expect(page.locator("#usage")).to_be_visible()
        expect(page.get_by_role("link", name="Admin console")).to_be_hidden()

        page.goto("/admin")
        expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
        expect(page.locator("#console")).to_be_hidden()

    with new_tab(browser, system.gateway) as page:  # not logged in at all
        page.goto("/admin")
        expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
        expect(page.locator("#denied-reason")).to_contain_text("Log in")


def test_an_admin_discards_dead_letters_from_the_queues_table(browser, system, rabbitmq_config):
    # Straight into the dead-letter queue: the work queue's consumers would take a message
    # published to it before it could be rejected.
    dead_queue = dead_letter_queue(system.env["MP3_QUEUE"])
    connection = pika.BlockingConnection(connection_parameters(rabbitmq_config, "test-admin"))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for message_id, body in (job_message(1), job_message(2)):
            properties = pika.BasicProperties(message_id=message_id, delivery_mode=2)
            channel.basic_publish("", dead_queue, json.dumps(body).encode(), properties)
    finally:
        connection.close()

    with new_tab(browser, system.gateway) as page:
        open_console(page)
        mp3 = page.locator('#queues tbody tr[data-queue="mp3"]')
        expect(mp3).to_contain_text("2")
        mp3.get_by_role("button", name="Dead letters").click()
        letters = page.locator("#dead-letters tbody tr")
        expect(letters).to_have_count(2)
        letters.filter(has_text=job_message(1)[0]).get_by_role("button", name="Discard").click()
        expect(page.locator("#notice")).to_contain_text("1 discarded.")
        expect(letters).to_have_count(1)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Discard all").click()
        expect(page.locator("#dead-letters-title")).to_contain_text(": 0")
        expect(mp3.locator("td").nth(3)).to_have_text("0")
        expect(page.locator("#audit tbody tr").first).to_contain_text("dead_letters.discard")
