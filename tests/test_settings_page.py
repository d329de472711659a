"""The Space's settings page (issue 13, item 7), driven in headless Chromium: a member changes
secrets, variables, hardware, sleep time, pauses and resumes, flips visibility and deletes
with a typed confirmation; other users get 404; a form sent from another site is refused."""
import time

import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from spacehooks import admin
from test_hubapi import hub, people  # noqa: F401 - fixtures


def signed_in(page, gw, token):
    page.context.add_cookies([{"name": "spacehooks_session", "value": token, "url": f"http://localhost:{gw.port}",
                               "httpOnly": True, "sameSite": "Lax"}])


def submit(page, section, action, **fields):
    form = page.locator(f"#{section} form[data-action='{action}']").last
    for name, value in fields.items():
        if name == "flavor":
            form.locator("select[name=flavor]").select_option(value)
        else:
            form.locator(f"[name={name}]").fill(value)
    with page.expect_navigation():
        form.locator("button").click()


def test_a_member_manages_the_space_from_its_settings_page(hub, page):
    gw, tokens = hub
    signed_in(page, gw, tokens["alice"])
    settings_url = f"http://localhost:{gw.port}/spaces/alice/app/settings"
    page.goto(f"http://localhost:{gw.port}/spaces/alice/app")
    with page.expect_navigation():
        page.locator("#settings-link").click()  # members find it on the Space's page
    assert page.url == settings_url
    assert "alice/app · Settings" in page.locator("h1").inner_text()

    submit(page, "secrets", "secret-set", key="API_KEY", value="s3cr3t-value")
    assert page.locator("#message").inner_text() == "Done: secret-set."
    assert "API_KEY" in page.locator("#secrets").inner_text()
    assert "s3cr3t-value" not in page.content()  # write-only
    assert admin.secret_list(gw.settings, "alice/app") == ["API_KEY"]
    submit(page, "variables", "variable-set", key="GREETING", value="hello")
    assert "GREETING = hello" in page.locator("#variables").inner_text()
    submit(page, "hardware", "sleep-time", seconds="600")
    assert page.locator("#hardware input[name=seconds]").input_value() == "600"
    submit(page, "hardware", "hardware", flavor="cpu-basic")
    submit(page, "secrets", "secret-delete")
    assert admin.secret_list(gw.settings, "alice/app") == []
    submit(page, "operations", "pause")
    assert gw.state.get_space("alice/app")["stage"] == "PAUSED"
    time.sleep(1.05)  # past the gateway's one-second snapshot
    page.goto(settings_url)
    assert page.locator("#operations form[data-action='resume']").count() == 1

    submit(page, "visibility", "visibility")
    assert gw.state.get_space("alice/app")["private"] == 1
    # delete: the typed name must match
    submit(page, "delete", "delete", confirm="alice/ap")
    assert page.locator("#message").inner_text() == "type alice/app to confirm that it is deleted"
    assert gw.state.get_space("alice/app") is not None
    actions = [r["action"] for r in gw.state.audit(space_id="alice/app")]
    assert actions == ["secret-set", "variable-set", "sleep-time", "hardware", "secret-delete", "pause", "visibility"]

    submit(page, "delete", "delete", confirm="alice/app")
    assert page.url == f"http://localhost:{gw.port}/"
    assert gw.state.get_space("alice/app") is None


def test_only_members_see_it_and_read_tokens_change_nothing(hub, page):
    gw, tokens = hub
    url = f"http://localhost:{gw.port}/spaces/alice/app/settings"
    assert requests.get(url, timeout=10).status_code == 404
    assert "settings-link" not in requests.get(url.removesuffix("/settings"), timeout=10,
                                               cookies={"spacehooks_session": tokens["bob"]}).text
    assert requests.get(url, cookies={"spacehooks_session": tokens["bob"]}, timeout=10).status_code == 404
    signed_in(page, gw, tokens["alice-read"])
    page.goto(url)
    assert page.locator("#secrets button").first.is_disabled()
    form = page.content()
    csrf = form.split('name="csrf" value="')[1].split('"')[0]
    refused = requests.post(url + "/secret-set", data={"csrf": csrf, "key": "K", "value": "v"}, timeout=10,
                            cookies={"spacehooks_session": tokens["alice-read"]})
    assert refused.status_code == 403 and "a read token cannot change a Space" in refused.text
    # bob with his own valid form token still cannot reach alice's Space
    bob_page = requests.get(f"http://localhost:{gw.port}/spaces/alice/app/settings", timeout=10,
                            cookies={"spacehooks_session": tokens["bob"]})
    assert bob_page.status_code == 404
    assert admin.secret_list(gw.settings, "alice/app") == []


def test_forms_from_another_site_are_refused(hub, page):
    gw, tokens = hub
    url = f"http://localhost:{gw.port}/spaces/alice/app/settings"
    cookie = {"spacehooks_session": tokens["alice"]}
    no_token = requests.post(url + "/secret-set", data={"key": "K", "value": "v"}, cookies=cookie, timeout=10)
    assert no_token.status_code == 403
    page_text = requests.get(url, cookies=cookie, timeout=10).text
    csrf = page_text.split('name="csrf" value="')[1].split('"')[0]
    foreign = requests.post(url + "/secret-set", data={"csrf": csrf, "key": "K", "value": "v"}, cookies=cookie,
                            headers={"Origin": "http://evil.example"}, timeout=10)
    assert foreign.status_code == 403
    # a real browser, signed in, on a page of another site that posts to the settings page
    signed_in(page, gw, tokens["alice"])
    page.goto(f"http://127.0.0.1:{gw.port}/signin")  # another site than localhost
    with page.expect_navigation():
        page.evaluate("""([url, csrf]) => { const f = document.createElement('form'); f.method = 'post';
            f.action = url; for (const [k, v] of [['csrf', csrf], ['key', 'EVIL'], ['value', 'x']]) {
        const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); f.submit(); }""", [url + "/secret-set", csrf])
    assert "403" in page.content() or "not found" in page.content().lower()
    assert admin.secret_list(gw.settings, "alice/app") == []
