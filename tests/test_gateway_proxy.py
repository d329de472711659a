"""Real HTTP through the gateway to a running Space: routing, streaming, SSE, WebSocket, headers."""
import asyncio

import aiohttp
import pytest
import requests

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest, sse_events


@pytest.fixture(params=["relay", "app-only"])
def gw(request, server, loops):
    """Each test twice: through the relay in front of the app, and with the app alone."""
    g = GatewayUnderTest(server, loops, **({"gateway.relay": False} if request.param == "app-only" else {}))
    yield g
    g.stop()


def get(gw, space_id, path="/", **kw):
    headers = {"Host": f"{gw.host(space_id)}:{gw.port}", **kw.pop("headers", {})}
    return requests.get(gw.url + path, headers=headers, timeout=10, **kw)


def test_routes_host_to_the_space_port(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port, config={"sdk": "gradio"})
    answer = get(gw, "alice/demo")
    assert answer.status_code == 200
    assert answer.text == "hello from v1\n"


def test_dashes_in_owner_and_name_are_resolved_against_known_spaces(gw, loops):
    a, b = Upstream(loops, "a"), Upstream(loops, "b")
    try:
        gw.add_space("my-org/app", port=a.port)
        gw.add_space("my/org-tool", port=b.port)
        gw.add_space("x_y/Some.Name", port=b.port)
        assert get(gw, "my-org/app").text == "hello from a\n"
        assert get(gw, "my/org-tool").text == "hello from b\n"
        assert gw.host("x_y/Some.Name") == "x-y-some-name.localhost"
        assert get(gw, "x_y/Some.Name").text == "hello from b\n"
    finally:
        a.stop()
        b.stop()


def test_unknown_host_gets_a_404_page(gw):
    answer = requests.get(gw.url + "/", headers={"Host": f"nobody-nothing.localhost:{gw.port}",
                                                 "Accept": "text/html"}, timeout=10)
    assert answer.status_code == 404
    assert "This Space does not exist" in answer.text
    assert f"Nothing is served at nobody-nothing.localhost:{gw.port}." in answer.text


def test_building_and_failed_spaces_answer_503_with_the_reason(gw):
    gw.add_space("alice/building", stage="BUILDING")
    gw.add_space("alice/broken", stage="BUILD_ERROR", error="pip install failed: no such package 'nope'")
    answer = get(gw, "alice/building")
    assert (answer.status_code, answer.text, answer.headers["Retry-After"]) == (
        503, "503: Space alice/building is BUILDING\n", "5")
    answer = get(gw, "alice/broken")
    assert (answer.status_code, answer.text) == (
        503, "503: Space alice/broken is BUILD_ERROR: pip install failed: no such package 'nope'\n")
    page = get(gw, "alice/broken", headers={"Accept": "text/html"})
    assert page.status_code == 503
    assert "This Space has an error" in page.text
    assert "pip install failed: no such package &#39;nope&#39;" in page.text


def test_post_body_headers_and_forwarding(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port,
                 config={"custom_headers": {"cross-origin-opener-policy": "same-origin",
                                            "x-not-allowed": "nope"}})
    answer = requests.post(gw.url + "/echo", data=b"payload \x00\xff", timeout=10,
                           headers={"Host": gw.host("alice/demo"), "Content-Type": "application/x-test"})
    assert answer.content == b"payload \x00\xff"
    assert answer.headers["Content-Type"] == "application/x-test"
    assert answer.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "x-not-allowed" not in answer.headers
    seen = get(gw, "alice/demo", "/headers", headers={"Cookie": "a=1"}).json()
    assert seen["Host"] == f"{gw.host('alice/demo')}:{gw.port}"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["Cookie"] == "a=1"


def test_large_streamed_request_and_response(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)
    body = bytes(range(256)) * 20000  # 5 MB: streamed, not buffered
    answer = requests.post(gw.url + "/echo", data=body, headers={"Host": gw.host("alice/demo")}, timeout=30)
    assert answer.content == body
    assert len(get(gw, "alice/demo", "/big").content) == 3 * 1024 * 1024


def test_disable_embedding_allows_only_the_gallery_to_frame_the_space(gw, upstream):
    gw.add_space("alice/private", port=upstream.port, config={"disable_embedding": True})
    answer = get(gw, "alice/private")
    assert answer.headers["Content-Security-Policy"] == f"frame-ancestors 'self' http://localhost:{gw.port}"


def test_server_sent_events_arrive_as_they_are_sent(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)

    async def read():
        arrivals = []
        async with aiohttp.ClientSession() as session:
            async with session.get(gw.url + "/sse", headers={"Host": gw.host("alice/demo"),
                                                             "Accept": "text/event-stream"}) as resp:
                assert resp.headers["Content-Type"] == "text/event-stream"
                start = asyncio.get_running_loop().time()
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        arrivals.append((line.decode().strip(), asyncio.get_running_loop().time() - start))
        return arrivals

    arrivals = asyncio.run(read())
    assert [a[0] for a in arrivals] == ["data: tick 0 from v1", "data: tick 1 from v1", "data: tick 2 from v1"]
    # streamed, not buffered: the first event comes long before the last
    assert arrivals[0][1] < 0.2 and arrivals[2][1] > 0.5


def test_websocket_round_trip(gw, upstream):
    gw.add_space("alice/demo", port=upstream.port)

    async def talk():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(gw.url + "/ws", headers={"Host": gw.host("alice/demo")},
                                          protocols=("chat",)) as ws:
                assert ws.protocol == "chat"
                await ws.send_str("ping")
                text = (await ws.receive(timeout=5)).data
                await ws.send_bytes(b"\x01\x02\x03")
                data = (await ws.receive(timeout=5)).data
                return text, data

    assert asyncio.run(talk()) == ("v1 echo: ping", b"\x03\x02\x01")


def test_dead_container_gives_502(gw):
    gw.add_space("alice/gone", port=free_port())
    answer = get(gw, "alice/gone")
    assert (answer.status_code, answer.text) == (502, "502: Space alice/gone is not answering\n")
