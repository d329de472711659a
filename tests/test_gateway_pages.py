"""What a person sees: the gallery and Space pages in a real headless Chromium, plus the status
API and the log streams those pages use."""
import time

import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import log_lines, shot


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
    assert page.locator(".section-title:visible").all_inner_texts() == ["ALL SPACES\n2"]
    page.fill("#search", "nothing like it")
    assert page.locator(".card:visible").count() == 0 and page.locator(".section-title:visible").count() == 0
    assert page.locator("#no-match").inner_text() == "No Space matches \u201cnothing like it\u201d."
    page.fill("#search", "")
    assert page.locator(".card:visible").count() == 3 and not page.locator("#no-match").is_visible()


def test_empty_gallery_says_how_to_add_a_space(gw, page):
    page.goto(f"http://localhost:{gw.port}/")
    assert page.locator(".empty").inner_text() == (
        "No Spaces yet.\n\nPush a repository whose README.md sets sdk: and it shows up here.")
    assert page.locator("#search").count() == 0
    shot(page, "gallery-empty")


def test_pages_fit_a_phone_and_the_space_page_fits_one_screen(gw, upstream, browser):
    gw.add_space("some-long-owner-name/a-space-with-a-rather-long-name", port=upstream.port, hardware="cpu-basic",
                 config={"title": "A title long enough to wrap on a phone, and then some more words", "emoji": "📱",
                         "colorFrom": "indigo", "colorTo": "pink", "sdk": "gradio", "license": "apache-2.0"})
    space_page = f"http://localhost:{gw.port}/spaces/some-long-owner-name/a-space-with-a-rather-long-name"
    size = "[document.documentElement.scrollWidth, document.documentElement.scrollHeight, innerWidth, innerHeight]"
    for width, height in ((1280, 800), (400, 800)):
        context = browser.new_context(viewport={"width": width, "height": height})
        pg = context.new_page()
        pg.goto(f"http://localhost:{gw.port}/")
        assert pg.evaluate(size)[0] == width  # nothing sticks out sideways
        assert pg.locator("#search").bounding_box()["width"] == (width - 32 if width < 640 else 280)
        if width < 640:
            shot(pg, "gallery-phone")
        pg.goto(space_page)
        pg.frame_locator("iframe#app").locator("body").wait_for()
        # the app takes the rest of the screen: one scroll bar, the app's own
        assert pg.evaluate(size) == [width, height, width, height]
        frame = pg.locator("iframe#app").bounding_box()
        assert frame["y"] + frame["height"] == height and frame["height"] > 400
        if width < 640:
            shot(pg, "space-page-phone")
        pg.click("button.tab[data-view=logs]")
        assert pg.evaluate(size) == [width, height, width, height]
        context.close()


def pages_origin(gw):
    from spacehooks.gateway.pages import public_url
    return public_url(gw.settings, gw.settings["gateway.domain"])


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
    # issue 15: "Duplicate" only for a signed-in user who may create Spaces (a write token)
    assert page.locator("#duplicate").count() == 0
    from spacehooks.access import accounts
    from spacehooks.gateway.credentials import COOKIE
    accounts.add_user(gw.settings, gw.state, "bob")
    for scope, offered in (("read", False), ("write", True)):
        page.context.clear_cookies()
        page.context.add_cookies([{"name": COOKIE, "value": accounts.create_token(gw.state, "bob", scope)[1],
                                   "url": f"http://localhost:{gw.port}"}])
        page.goto(f"http://localhost:{gw.port}/spaces/alice/chat")
        assert page.locator("#duplicate").count() == int(offered), scope
    page.click("#duplicate summary")
    assert page.locator("#duplicate .embed").inner_text() == (
        f'HfApi(endpoint="{pages_origin(gw)}").duplicate_repo("alice/chat", "bob/chat", repo_type="space")')
    page.click("#duplicate summary")
    page.context.clear_cookies()
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
    assert (missing.status_code, missing.headers["X-Error-Code"]) == (404, "RepoNotFound")
    assert missing.json() == {"error": "Repository Not Found for url: /api/spaces/alice/none. Make sure the Space "
                                       "exists and that you have access to it."}
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
    # run logs are for the Space's members (issue 13): anyone else is told it is not there
    assert requests.get(gw.url + "/api/spaces/alice/chat/logs/run", timeout=10).status_code == 404
    from spacehooks.access import accounts
    accounts.add_user(gw.settings, gw.state, "alice")
    token = accounts.create_token(gw.state, "alice", "read")[1]
    with requests.get(gw.url + "/api/spaces/alice/chat/logs/run", stream=True, timeout=10,
                      headers={"Authorization": f"Bearer {token}"}) as stream:
        text = next(stream.iter_content(None)).decode()
    assert log_lines(text) == ["Running on local URL:  http://0.0.0.0:7860"]
