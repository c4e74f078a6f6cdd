"""The console in a real headless browser (Debian's chromium driven by Playwright), against
the real app under uvicorn, a real worker process and the sandbox transport.

Each test saves a screenshot under build/test-artifacts/console/. With
PGFLOW_DOCS_SCREENSHOTS=1 the inbox and conversation tests also write the README's
pictures (docs/console-inbox.png, docs/console-conversation.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgflow import db as pdb
from pgflow import passwords
from pgflow.config import Settings
from tests.factories import apply_campaign, count
from tests.fake_retell import FakeRetell
from tests.helpers import scalar
from tests.processes import ROOT, WorkerProcess, serving, wait_until

playwright = pytest.importorskip("playwright.sync_api")

Conn = psycopg.Connection[Any]
KEY = "console-key"
SECRET = "s" * 40
PASSWORD = "correct horse battery"
HASHED = passwords.hash_password(PASSWORD)
OPEN = {"window_start": "00:00", "window_end": "24:00"}
FAST = ("--retry-base", "0.05", "--poll", "0.2", "--heartbeat-timeout", "30")
LINE = "+14155550100"
ARTIFACTS = Path(ROOT) / "build" / "test-artifacts" / "console"
DOCS = Path(ROOT) / "docs"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_clock,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is needed"),
]


class Console:
    """The running product and a browser page on it."""

    def __init__(self, db: Conn, web: httpx.Client, fake: FakeRetell, page: Any) -> None:
        self.db, self.web, self.fake, self.page = db, web, fake, page
        self.url = str(web.base_url)

    def lead(self, phone: str, first_name: str, **extra: Any) -> dict[str, Any]:
        response = self.web.post(
            "/webhooks/leads",
            json={"campaign": "solar", "phone": phone, "first_name": first_name, **extra},
            headers={"Authorization": "Bearer t"},
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def sent_first(self, phone: str) -> int:
        wait_until(
            lambda: scalar(
                self.db,
                "select count(*) from pgflow.messages m join pgflow.contacts c"
                " on c.id = m.contact_id where c.phone = %s and m.kind = 'campaign'"
                " and m.delivery_status = 'sent'",
                [phone],
            ),
            timeout=15,
            what="the first drip step sent",
        )
        cid: int = scalar(
            self.db,
            "select cv.id from pgflow.conversations cv join pgflow.contacts c"
            " on c.id = cv.contact_id where c.phone = %s order by cv.id desc limit 1",
            [phone],
        )
        return cid

    def sign_in(self, email: str = "dana@example.com", password: str = PASSWORD) -> None:
        self.page.goto(f"{self.url}/console/")
        assert "/console/sign-in" in self.page.url
        self.page.fill("input[name=email]", email)
        self.page.fill("input[name=password]", password)
        self.page.click("button[type=submit]")

    def shot(self, name: str, docs: str | None = None) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        if docs and os.environ.get("PGFLOW_DOCS_SCREENSHOTS") == "1":
            self.page.screenshot(path=str(DOCS / docs), full_page=False)

    def mark_page(self) -> None:
        """A marker that a reload would erase: proves an update came without one."""
        self.page.evaluate("window.__noReload = 42")

    def not_reloaded(self) -> bool:
        return bool(self.page.evaluate("window.__noReload === 42"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def console(db_url: str, db: Conn, browser: Any) -> Iterator[Console]:
    apply_campaign(db, **OPEN)
    db.execute("update pgflow.agents set reply_debounce = interval '0 seconds'")
    for email, role in (("dana@example.com", "agent"), ("max@example.com", "admin")):
        pdb.add_console_user(email, role, HASHED, "test").run(db)
    with FakeRetell(KEY) as fake:
        settings = Settings(
            database_url=db_url,
            lead_token="t",
            retell_api_key=KEY,
            retell_base_url=fake.url,
            sms_transport="sandbox",
            console_secret=SECRET,
        )
        env = {"PGFLOW_SMS_TRANSPORT": "sandbox"}
        with serving(settings) as web:
            fake.webhook_url = f"{web.base_url}/webhooks/retell"
            worker = WorkerProcess(db_url, fake.url, KEY, *FAST, env=env).started()
            context = browser.new_context(viewport={"width": 1200, "height": 860})
            page = context.new_page()
            page.set_default_timeout(8000)
            try:
                yield Console(db, web, fake, page)
            finally:
                context.close()
                worker.stop()


def test_sign_in_and_a_wrong_password(console: Console) -> None:
    console.sign_in(password="not the password")
    assert console.page.locator(".flash.bad").inner_text() == "Wrong email or password."
    console.shot("sign_in_wrong_password")
    console.sign_in()
    console.page.wait_for_selector("h1:text('Inbox')")
    assert console.page.url.endswith("/console/")
    console.shot("signed_in")
    assert count(console.db, "audit_log", "action = 'sign_in'") == 1


def test_a_new_lead_and_its_reply_appear_live(console: Console) -> None:
    console.sign_in()
    console.page.wait_for_selector("h1:text('Inbox')")
    console.mark_page()
    console.lead("+12125550147", "Sam")
    console.page.wait_for_selector("text=Sam", timeout=5000)
    assert console.not_reloaded()
    console.sent_first("+12125550147")
    console.lead("+12125550152", "Noor", last_name="Haddad")
    console.page.wait_for_selector("text=Noor Haddad", timeout=5000)
    console.shot("inbox_live", docs="console-inbox.png")
    console.page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert console.page.evaluate("document.documentElement.scrollWidth <= 390")  # no sideways
    console.shot("inbox_phone")
    console.page.set_viewport_size({"width": 1200, "height": 860})
    console.page.click("text=Sam")
    console.page.wait_for_selector(".msg.campaign")
    console.mark_page()
    console.fake.say("+12125550147", LINE, "Yes please, how much does it cost?")
    console.page.wait_for_selector(".msg.lead >> text=how much does it cost", timeout=5000)
    assert console.not_reloaded()
    console.shot("reply_live")


def test_reply_as_a_person_takeover_and_hand_back(console: Console) -> None:
    phone = "+12125550148"
    console.lead(phone, "Rita")
    conversation = console.sent_first(phone)
    console.sign_in()
    console.page.goto(f"{console.url}/console/conversations/{conversation}")
    console.page.click("button:text('Take over')")
    console.page.wait_for_selector("text=You hold this lead")
    text = "Hi Rita, Dana here from SunCo - can I call you at 5pm? ¿Sí?"
    console.page.fill("#reply-body", text)
    console.page.click("button:text('Send text')")
    console.page.wait_for_selector("text=Your text is queued")
    wait_until(
        lambda: any(t["text"] == text for t in console.fake.phone(phone)),
        timeout=10,
        what="the person's text on the lead's phone",
    )
    console.page.wait_for_selector(".msg.human .body:text-is('" + text.replace("'", "\\'") + "')")
    # recorded once: the chat's echo of the person's text is not a second (agent) message
    assert count(console.db, "messages", "body = %s", [text]) == 1
    # The lead answers while Dana holds it: the agent stays quiet.
    console.mark_page()
    console.fake.say(phone, LINE, "5pm works")
    console.page.wait_for_selector("text=5pm works", timeout=5000)
    assert console.not_reloaded()
    lead_text = scalar(console.db, "select id from pgflow.messages where body = '5pm works'")
    wait_until(
        lambda: scalar(
            console.db,
            "select count(*) from pgflow.pgqueuer_log where entrypoint = 'agent_reply'"
            " and status = 'successful'",
        ),
        timeout=10,
        what="the agent_reply job done",
    )
    assert count(console.db, "messages", f"kind = 'agent' and id > {lead_text}") == 0
    console.shot("conversation_held", docs="console-conversation.png")
    console.page.click("button:text('Hand back to the agent')")
    console.page.wait_for_selector("text=Handed back")
    wait_until(
        lambda: count(console.db, "messages", f"kind = 'agent' and id > {lead_text}"),
        timeout=10,
        what="the agent answering after the hand back",
    )
    actions = console.db.execute(
        "select action from pgflow.audit_log where conversation_id is not null order by id"
    ).fetchall()
    assert [a for (a,) in actions] == ["takeover", "reply", "hand_back"]
    console.page.reload()
    assert console.page.locator(".note.audit").count() == 3
    console.shot("conversation_handed_back")


def test_settle_a_review_in_one_click(console: Console) -> None:
    console.lead("+12125550149", "Ola")
    conversation = console.sent_first("+12125550149")
    pdb.end_conversation(conversation, "qualified", "the LLM said so", "llm").run(console.db)
    pdb.set_outcome(conversation, "unqualified", "retell disagrees", "retell").run(console.db)
    console.sign_in()
    console.page.goto(f"{console.url}/console/review")
    console.page.wait_for_selector("text=retell says unqualified")
    console.shot("review_queue")
    console.page.click("button:text('unqualified')")
    console.page.wait_for_selector("text=Nothing to review.")
    assert scalar(
        console.db, "select conversion_status || '/' || outcome_source from pgflow.conversations"
    ) == ("unqualified/human")


def test_requeue_a_dead_letter(console: Console) -> None:
    console.lead("+12125550150", "Pat")
    console.sent_first("+12125550150")
    message = scalar(console.db, "select id from pgflow.messages where kind = 'campaign'")
    console.db.execute(
        "update pgflow.messages set delivery_status = 'dead_letter',"
        " delivery_error = 'HTTP 400: bad request' where id = %s",
        [message],
    )
    console.sign_in("max@example.com")
    console.page.goto(f"{console.url}/console/dead-letters")
    console.page.check(f"input[name=id][value='{message}']")
    console.page.click("button:text('Re-queue picked')")
    console.page.wait_for_selector(f"text=#{message}: requeued")
    console.shot("dead_letter_requeued")
    wait_until(
        lambda: (
            scalar(
                console.db, "select delivery_status from pgflow.messages where id = %s", [message]
            )
            == "sent"
        ),
        timeout=10,
        what="the re-queued text sent",
    )
    assert count(console.db, "audit_log", "action = 'requeue'") == 1
    console.page.goto(f"{console.url}/console/funnel")
    assert console.page.locator("svg.chart").count() == 3  # per hour, the funnel, the steps
    assert "enrolled" in (console.page.text_content("svg[aria-label='Funnel of solar']") or "")
    console.shot("funnel")


def test_an_agent_is_refused_the_users_page(console: Console) -> None:
    console.sign_in()
    console.page.wait_for_selector("h1:text('Inbox')")
    response = console.page.goto(f"{console.url}/console/users")
    assert response is not None
    assert response.status == 403
    assert "Not allowed" in console.page.inner_text("h1")
    assert console.page.locator("a:text('Users')").count() == 0
    console.shot("agent_refused_users")


def test_hostile_text_renders_as_text_and_forged_posts_change_nothing(console: Console) -> None:
    hostile = "<script>window.__xss = 1</script>\"' \u202eevil"
    console.lead("+12125550151", hostile)
    conversation = console.sent_first("+12125550151")
    console.fake.say("+12125550151", LINE, '<img src=x onerror="window.__xss=2">')
    wait_until(lambda: count(console.db, "messages", "kind = 'lead'"), what="the lead's text")
    console.sign_in()
    console.page.wait_for_selector("text=<script>window.__xss = 1</script>")
    console.page.goto(f"{console.url}/console/conversations/{conversation}")
    console.page.wait_for_selector("text=<img src=x")
    assert console.page.evaluate("window.__xss === undefined")
    console.shot("hostile_text")
    cookies = {c["name"]: c["value"] for c in console.page.context.cookies()}
    session = {"pgflow_session": cookies["pgflow_session"]}
    csrf = console.page.locator("input[name=csrf_token]").first.get_attribute("value")
    form = {"body": "forged", "key": "k1"}
    with httpx.Client(base_url=console.url, cookies=session) as client:
        refused = client.post(f"/console/conversations/{conversation}/reply", data=form)
        assert refused.status_code == 403
        assert "text/html" in refused.headers["content-type"]
        wrong = client.post(
            f"/console/conversations/{conversation}/reply", data={**form, "csrf_token": "x" * 43}
        )
        assert wrong.status_code == 403
        agent_add = client.post(
            "/console/users",
            data={"csrf_token": csrf, "action": "add", "email": "e@x.io", "role": "admin"},
        )
        assert agent_add.status_code == 403
        unknown = client.get("/console/conversations/999999")
        assert unknown.status_code == 404
        assert "<h1>Not found</h1>" in unknown.text
    with httpx.Client(base_url=console.url) as stranger:
        nobody = stranger.post(
            f"/console/conversations/{conversation}/reply", data={**form, "csrf_token": csrf}
        )
        assert nobody.status_code == 403
    assert count(console.db, "messages", "kind = 'human'") == 0
    assert count(console.db, "console_users", "email = 'e@x.io'") == 0


def test_core_actions_work_without_javascript_and_from_the_keyboard(
    console: Console, browser: Any
) -> None:
    phone = "+12125550153"
    console.lead(phone, "Kai")
    conversation = console.sent_first(phone)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(8000)
    try:
        console.page = page  # the same helpers, on a page without scripts
        console.sign_in()
        page.wait_for_selector("h1:text('Inbox')")
        page.goto(f"{console.url}/console/conversations/{conversation}")
        page.click("button:text('Take over')")
        page.wait_for_selector("text=You hold this lead")
        # the keyboard alone: focus the text box, type, Tab to the button, Enter
        page.focus("#reply-body")
        page.keyboard.type("Typed without a mouse or a script.")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Send text"
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Your text is queued")
        console.shot("no_javascript_keyboard_reply")
    finally:
        context.close()
    wait_until(
        lambda: any(
            t["text"] == "Typed without a mouse or a script." for t in console.fake.phone(phone)
        ),
        timeout=10,
        what="the typed text on the lead's phone",
    )
