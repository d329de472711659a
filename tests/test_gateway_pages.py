"""What a person sees: the gallery and Space pages in a real headless Chromium, plus the status
API and the log streams those pages use."""
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import sync_playwright

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import log_lines

SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    dialogs = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    context.close()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def add_build_log(gw, space_id, lines):
    cur = gw.state.conn.execute(
        "INSERT INTO builds (space_id, \"commit\", status, created_at) VALUES (?, 'abc', 'running', ?)",
        (space_id, time.time()))
    path = gw.state.build_log_path(space_id, cur.lastrowid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_gallery_shows_cards_pinned_first_and_escapes_readme_text(gw, upstream, page):
    gw.add_space("alice/chat", port=upstream.port, config={
        "title": "Chat Demo", "emoji": "💬", "colorFrom": "blue", "colorTo": "green", "sdk": "gradio",
        "short_description": "Talk to a small model"})
    gw.add_space("zed/pinned", port=upstream.port, config={
        "title": "Pinned One", "emoji": "📌", "colorFrom": "purple", "colorTo": "pink", "sdk": "streamlit", "pinned": True})
    gw.add_space("eve/xss", stage="BUILDING", config={
        "title": "<script>alert('x')</script><img src=x onerror=alert(1)>", "emoji": "😈",
        "colorFrom": "red", "colorTo": "yellow", "sdk": "static", "short_description": "\"quoted\" & <b>bold</b>"})
    page.goto(f"http://localhost:{gw.port}/")
    cards = page.locator(".card")
    assert cards.count() == 3
    assert cards.nth(0).get_attribute("data-space") == "zed/pinned"
    chat = page.locator('.card[data-space="alice/chat"]')
    assert chat.locator(".card-title").inner_text() == "Chat Demo"
    assert chat.locator(".card-emoji").inner_text() == "💬"
    assert chat.locator(".card-desc").inner_text() == "Talk to a small model"
    assert chat.locator(".badge").inner_text() == "Running"
    gradient = chat.evaluate("el => getComputedStyle(el).backgroundImage")
    assert gradient == "linear-gradient(135deg, rgb(37, 99, 235), rgb(22, 163, 74))"
    evil = page.locator('.card[data-space="eve/xss"]')
    assert evil.locator(".card-title").inner_text() == "<script>alert('x')</script><img src=x onerror=alert(1)>"
    assert evil.locator(".card-desc").inner_text() == "\"quoted\" & <b>bold</b>"
    assert evil.locator(".badge").inner_text() == "Building"
    assert page.locator(".card img").count() == 0 and page.dialogs == []
    shot(page, "gallery")
    page.fill("#search", "chat")
    assert page.locator(".card:visible").count() == 1


def test_space_page_shows_header_stage_and_the_app_in_an_iframe(gw, upstream, page):
    gw.add_space("alice/chat", port=upstream.port, hardware="cpu-basic", config={
        "title": "Chat Demo", "emoji": "💬", "colorFrom": "blue", "colorTo": "green", "sdk": "gradio",
        "suggested_hardware": "t4-small", "fullWidth": False, "license": "mit",
        "short_description": "Talk to a small model"})
    add_build_log(gw, "alice/chat", ["Step 1/3 : FROM base", "Successfully built"])
    page.goto(f"http://localhost:{gw.port}/spaces/alice/chat")
    assert page.locator(".space-title .name").inner_text() == "chat"
    assert page.locator("#stage").inner_text() == "Running"
    assert "💡 suggested: t4-small" in " ".join(page.locator(".space-title").inner_text().split())
    frame = page.frame_locator("iframe#app")
    assert frame.locator("body").inner_text(timeout=10000).strip() == "hello from v1"
    assert page.locator("iframe#app").get_attribute("src") == f"http://alice-chat.localhost:{gw.port}/"
    assert page.locator(".app-wrap.narrow").count() == 1
    shot(page, "space-page")
    page.click("button.tab[data-view=logs]")
    page.wait_for_function("document.querySelector('#view-logs .logpane').textContent.includes('Successfully built')")
    shot(page, "space-logs")


def test_building_space_page_follows_the_build_log_live(gw, page):
    gw.add_space("bob/slow", stage="BUILDING", config={"title": "Slow", "emoji": "🐢", "colorFrom": "yellow",
                                                       "colorTo": "red", "sdk": "docker", "header": "mini"})
    log = add_build_log(gw, "bob/slow", ["-----> Installing packages.txt"])
    page.goto(f"http://localhost:{gw.port}/spaces/bob/slow")
    assert page.locator(".mini-header").inner_text().startswith("🤗")
    assert page.locator("#stage").inner_text() == "Building"
    pane = "document.querySelector('#view-app .logpane').textContent"
    page.wait_for_function(f"{pane}.includes('Installing packages.txt')")
    with log.open("a") as fh:
        fh.write("-----> pip install gradio\n")
    page.wait_for_function(f"{pane}.includes('pip install gradio')", timeout=10000)
    shot(page, "space-building")


def test_status_page_at_the_space_address(gw, page):
    gw.add_space("carol/err", stage="RUNTIME_ERROR", error="the app exited with code 1\nTraceback: <boom>",
                 config={"title": "Broken", "emoji": "💥", "colorFrom": "red", "colorTo": "gray", "sdk": "gradio"})
    page.goto(f"http://carol-err.localhost:{gw.port}/")
    assert page.locator("h1").inner_text() == "This Space has an error"
    assert page.locator("p.msg").inner_text() == "the app exited with code 1\nTraceback: <boom>"
    shot(page, "status-error")


def test_runtime_api_and_log_streams(gw, upstream):
    gw.add_space("alice/chat", port=upstream.port, hardware="cpu-basic", commit="c" * 40, sleep_seconds=-1,
                 config={"sdk": "gradio"})
    add_build_log(gw, "alice/chat", ["line one", "line two"])
    runtime = requests.get(gw.url + "/api/spaces/alice/chat/runtime", timeout=10).json()
    assert {k: runtime[k] for k in ("stage", "hardware", "gcTimeout", "sleepTime", "commit", "sdk", "domains")} == {
        "stage": "RUNNING", "hardware": {"current": "cpu-basic", "requested": "cpu-basic"}, "gcTimeout": None,
        "sleepTime": -1, "commit": "c" * 40, "sdk": "gradio",
        "domains": [{"domain": "alice-chat.localhost", "stage": "READY"}]}
    missing = requests.get(gw.url + "/api/spaces/alice/none/runtime", timeout=10)
    assert (missing.status_code, missing.json()) == (404, {"error": "Space alice/none does not exist"})
    with requests.get(gw.url + "/api/spaces/alice/chat/logs/build", stream=True, timeout=10) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        text = b""
        for chunk in stream.iter_content(None):
            text += chunk
            if b"line two" in text:
                break
    assert log_lines(text.decode()) == ["line one", "line two"]
    run_log = gw.state.run_log_path("alice/chat")
    run_log.parent.mkdir(parents=True, exist_ok=True)
    run_log.write_text("Running on local URL:  http://0.0.0.0:7860\n")
    with requests.get(gw.url + "/api/spaces/alice/chat/logs/run", stream=True, timeout=10) as stream:
        text = next(stream.iter_content(None)).decode()
    assert log_lines(text) == ["Running on local URL:  http://0.0.0.0:7860"]
