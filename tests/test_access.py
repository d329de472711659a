"""Private Spaces and the owner rules on every route (issue 13, items 1 and 5): a real gateway
-- the relay in front of the app, and the app alone -- a real store, a hostile Space that echoes
what it receives. A token of one user never touches another's Space; revoked and expired
tokens fail; a private Space is not there for anyone but its members, whatever the path."""
import socket
import time

import pytest
import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest
from spacehooks.access import accounts


@pytest.fixture(autouse=True)
def localhost_names(monkeypatch):
    """`*.localhost` is loopback (RFC 6761), as browsers resolve it; glibc here does not."""
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **kw: real(
        "127.0.0.1" if isinstance(host, str) and host.endswith(".localhost") else host, *a, **kw))


@pytest.fixture(params=["relay", "app-only"])
def site(request, server, loops, upstream):
    gw = GatewayUnderTest(server, loops, **({} if request.param == "relay" else {"gateway.relay": False}))
    st, settings = gw.state, gw.settings
    for name in ("alice", "bob"):
        accounts.add_user(settings, st, name)
    tokens = {"alice": accounts.create_token(st, "alice", "write")[1], "bob": accounts.create_token(st, "bob", "write")[1],
              "alice-read": accounts.create_token(st, "alice", "read")[1]}
    gw.state.ensure_space("alice/secret", "/nonexistent")
    gw.state.set_private("alice/secret", True)
    gw.add_space("alice/public", port=upstream.port, config={"sdk": "docker"})
    gw.state.update_space("alice/secret", stage="RUNNING", port=upstream.port, config={"sdk": "docker"})
    time.sleep(1.05)
    yield gw, tokens
    gw.stop()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def raw_get(gw, host, path, extra=""):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


PRIVATE_API = ["/api/spaces/alice/secret", "/api/spaces/alice/secret/runtime", "/api/spaces/alice/secret/logs/build",
               "/api/spaces/alice/secret/logs/run", "/api/spaces/alice/secret/variables",
               "/api/spaces/alice/secret/secrets", "/spaces/alice/secret"]


def test_a_private_space_is_not_there_for_anonymous_or_other_users_on_any_path(site):
    gw, tokens = site
    host = gw.host("alice/secret")
    for who in (None, tokens["bob"]):
        headers = bearer(who) if who else {}
        for path in PRIVATE_API:
            answer = requests.get(gw.url + path, headers=headers, timeout=10)
            assert answer.status_code == 404, (who, path)
            if path.startswith("/api/"):
                assert answer.headers["X-Error-Code"] == "RepoNotFound"
        assert "alice/secret" not in requests.get(gw.url + "/", headers=headers, timeout=10).text
        assert "alice/secret" not in requests.get(gw.url + "/api/spaces", headers=headers, timeout=10).text
        # its own address: plain requests, event streams and WebSocket upgrades alike
        for extra in ("", "Accept: text/event-stream\r\n",
                      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n"):
            auth = f"Authorization: Bearer {who}\r\n" if who else ""
            answer = raw_get(gw, host, "/headers" if not extra.startswith("Upgrade") else "/ws", auth + extra)
            assert answer.startswith(b"HTTP/1.1 404"), (who, extra, answer[:200])
            assert b"hello from" not in answer
    # members get in: bearer token, gradio_client's header, or the sign-in cookie
    assert requests.get(gw.space_url("alice/secret") + "/", headers=bearer(tokens["alice-read"]),
                        timeout=10).text == "hello from v1\n"
    assert requests.get(gw.space_url("alice/secret") + "/", timeout=10,
                        headers={"X-HF-Authorization": f"Bearer {tokens['alice']}"}).text == "hello from v1\n"
    assert requests.get(gw.space_url("alice/secret") + "/", timeout=10,
                        cookies={"spacehooks_session": tokens["alice"]}).text == "hello from v1\n"
    for path in PRIVATE_API:
        assert requests.get(gw.url + path, headers=bearer(tokens["alice"]), timeout=10,
                            stream=True).status_code == 200, path
    assert "alice/secret" in requests.get(gw.url + "/", cookies={"spacehooks_session": tokens["alice"]}, timeout=10).text


def test_the_space_never_sees_the_gateways_cookie_or_tokens(site):
    gw, tokens = site
    for space in ("alice/public", "alice/secret"):
        seen = requests.get(gw.space_url(space) + "/headers", timeout=10, headers={
            "Authorization": f"Bearer {tokens['alice']}", "X-HF-Authorization": f"Bearer {tokens['alice']}",
            "Cookie": f"theme=dark; spacehooks_session={tokens['alice']}; lang=en"}).json()
        seen = {k.lower(): v for k, v in seen.items()}
        assert tokens["alice"] not in str(seen), space
        assert "authorization" not in seen and "x-hf-authorization" not in seen
        assert seen["cookie"] == "theme=dark; lang=en"
        # an app's own credentials pass
        own = requests.get(gw.space_url(space) + "/headers", timeout=10, headers={
            "Authorization": "Bearer app-own-token", **bearer_cookie(tokens)}).json()
        assert own["Authorization"] == "Bearer app-own-token"


def test_a_space_cannot_set_the_gateways_cookie(site):
    # its host shares the cookie's domain: it would sign its visitors in as someone else
    gw, tokens = site
    for space in ("alice/public", "alice/secret"):
        answer = requests.get(gw.space_url(space) + "/cookies", headers=bearer(tokens["alice"]), timeout=10)
        assert answer.status_code == 200, space
        assert answer.raw.headers.getlist("Set-Cookie") == ["theme=dark; Path=/"], space


def test_the_api_takes_no_cookie_for_a_change(site):
    # a page on a Space host posting here would carry the member's cookie (same site, no
    # preflight for text/plain): changes need the bearer token the Hub's client sends
    gw, tokens = site
    forged = requests.post(f"{gw.url}/api/spaces/alice/public/variables", data='{"key": "K", "value": "v"}',
                           headers={**bearer_cookie(tokens), "Content-Type": "text/plain"}, timeout=30)
    assert forged.status_code == 401
    assert gw.state.variables("alice/public") == {}
    assert requests.get(f"{gw.url}/api/spaces/alice/secret/variables", headers=bearer_cookie(tokens),
                        timeout=30).status_code == 200  # reading with the cookie stays
    done = requests.post(f"{gw.url}/api/spaces/alice/public/variables", json={"key": "K", "value": "v"},
                         headers=bearer(tokens["alice"]), timeout=30)
    assert done.status_code == 200 and gw.state.variables("alice/public") == {"K": "v"}


def bearer_cookie(tokens):
    return {"Cookie": f"spacehooks_session={tokens['alice']}"}


def test_one_users_token_cannot_touch_anothers_space(site):
    gw, tokens = site
    bob = bearer(tokens["bob"])
    writes = [("POST", "restart", None), ("POST", "pause", None), ("POST", "sleeptime", {"seconds": 60}),
              ("POST", "hardware", {"flavor": "cpu-basic"}), ("POST", "secrets", {"key": "K", "value": "v"}),
              ("DELETE", "secrets", {"key": "K"}), ("POST", "variables", {"key": "K", "value": "v"}),
              ("DELETE", "variables", {"key": "K"}), ("PUT", "settings", {"private": True})]
    for method, what, body in writes:
        public = requests.request(method, f"{gw.url}/api/spaces/alice/public/{what}", json=body, headers=bob, timeout=30)
        assert public.status_code == 403, (what, public.text)
        assert public.json() == {"error": "bob may not change alice/public: it belongs to alice"}
        private = requests.request(method, f"{gw.url}/api/spaces/alice/secret/{what}", json=body, headers=bob, timeout=30)
        assert private.status_code == 404, what
        read_only = requests.request(method, f"{gw.url}/api/spaces/alice/public/{what}", json=body, timeout=30,
                                     headers=bearer(tokens["alice-read"]))
        assert (read_only.status_code, read_only.json()) == (403, {"error": "a read token cannot change a Space"})
        anonymous = requests.request(method, f"{gw.url}/api/spaces/alice/public/{what}", json=body, timeout=30)
        assert anonymous.status_code == 401, what
    for target in ("alice/public", "alice/secret"):
        gone = requests.delete(gw.url + "/api/repos/delete", json={"name": target, "type": "space"}, headers=bob,
                               timeout=30)
        assert gone.status_code in (403, 404)
    made = requests.post(gw.url + "/api/repos/create", json={"name": "sneaky", "organization": "alice", "type": "space",
                                                            "sdk": "static"}, headers=bob, timeout=30)
    assert (made.status_code, made.json()) == (403, {"error": "bob may not create Spaces under alice"})
    assert gw.state.get_space("alice/public")["stage"] == "RUNNING" and gw.state.variables("alice/public") == {}
    assert gw.state.audit() == []


def test_revoked_and_expired_tokens_fail_everywhere(site):
    gw, tokens = site
    tid, token = accounts.create_token(gw.state, "alice", "write")
    _, short = accounts.create_token(gw.state, "alice", "write", expires_in=1)
    assert requests.get(gw.url + "/api/whoami-v2", headers=bearer(token), timeout=10).json()["name"] == "alice"
    gw.state.revoke_token(tid)
    time.sleep(1.1)
    for dead in (token, short):
        who = requests.get(gw.url + "/api/whoami-v2", headers=bearer(dead), timeout=10)
        assert who.status_code == 401
        assert requests.post(gw.url + "/api/spaces/alice/public/pause", headers=bearer(dead), timeout=10).status_code == 401
        assert requests.get(gw.url + "/api/spaces/alice/secret", headers=bearer(dead), timeout=10).status_code in (401, 404)
        assert requests.get(gw.space_url("alice/secret") + "/", headers=bearer(dead), timeout=10).status_code == 404
        assert requests.get(gw.space_url("alice/secret") + "/", cookies={"spacehooks_session": dead},
                            timeout=10).status_code == 404


def test_token_and_sign_in_attempts_are_rate_limited(site):
    gw, tokens = site
    wrong = "shk_0123456789_" + "A" * 40
    answers = [requests.get(gw.url + "/api/whoami-v2", headers=bearer(wrong), timeout=10).status_code
               for _ in range(10)]
    assert answers == [401] * 10
    limited = requests.get(gw.url + "/api/whoami-v2", headers=bearer(tokens["alice"]), timeout=10)
    assert limited.status_code == 429 and 0 < int(limited.headers["Retry-After"]) <= 60
    form = requests.post(gw.url + "/signin", data={"token": tokens["alice"]}, timeout=10, allow_redirects=False)
    assert form.status_code == 429 and "Retry-After" in form.headers


def test_sign_in_sets_a_secure_httponly_cookie_for_the_space_hosts(site):
    gw, tokens = site
    bad = requests.post(gw.url + "/signin", data={"token": "nope"}, timeout=10, allow_redirects=False)
    assert bad.status_code == 401 and "Set-Cookie" not in bad.headers
    foreign = requests.post(gw.url + "/signin", data={"token": tokens["alice"]}, allow_redirects=False, timeout=10,
                            headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "Set-Cookie" not in foreign.headers
    ok = requests.post(gw.url + "/signin", data={"token": tokens["alice"]}, timeout=10, allow_redirects=False)
    assert ok.status_code == 303
    cookie = ok.headers["Set-Cookie"]
    assert cookie.startswith(f"spacehooks_session={tokens['alice']};")
    for part in ("Domain=localhost", "HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
        assert part in cookie, part


def test_a_private_static_space_is_not_served_from_the_relays_files_to_strangers(engine, loops):
    from test_gateway_static import STATIC_README, fetch, static_space
    static_space(engine, "alice/site", {"README.md": STATIC_README, "index.html": "<h1>members</h1>\n"})
    settings = engine.settings
    from spacehooks import state
    st = state.open(settings)
    accounts.add_user(settings, st, "alice")
    token = accounts.create_token(st, "alice", "read")[1]
    st.set_private("alice/site", True)
    st.close()
    gw = GatewayUnderTest(engine, loops)
    try:
        time.sleep(1.05)
        host = gw.host("alice/site")
        for _ in range(2):  # the first member request loads the deploy folder the relay answers from
            status, _, body = fetch(gw, host, "/", {"Authorization": f"Bearer {token}"})
            assert (status, body) == (200, b"<h1>members</h1>\n")
        served = gw.listening.relay.static
        status, _, body = fetch(gw, host, "/")
        assert status == 404 and b"members" not in body
        status, _, body = fetch(gw, host, "/index.html", {"Cookie": "spacehooks_session=shk_0000000000_" + "A" * 40})
        assert status == 404 and b"members" not in body
        assert gw.listening.relay.static == served
    finally:
        gw.stop()
