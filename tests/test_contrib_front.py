"""contrib/nginx/spacehooks.conf run by a real nginx, with a self-signed wildcard certificate,
in front of a small local upstream standing in for the gateway: HTTPS, the Host of each
Space, forwarded headers, the redirect from http, and a WebSocket upgrade end to end."""
from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import urllib.request

import aiohttp
import pytest
from aiohttp import web

import servers

DOMAIN = "spaces.example.com"


class Upstream:
    """An aiohttp app in its own thread: echoes WebSocket messages and request headers."""

    def __init__(self):
        self.port = servers.free_port()
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def headers(self, request):
        return web.json_response({k: v for k, v in request.headers.items()})

    async def ws(self, request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str(f"hello {request.host}")
        async for msg in sock:
            await sock.send_str(f"echo {msg.data}")
        return sock

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/headers", self.headers)
        app.router.add_get("/queue/join", self.ws)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def start(self):
        self.thread.start()
        self.started.wait(10)
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _site_config(https_port, http_port, upstream_port, cert, key) -> str:
    text = (servers.CONTRIB / "nginx" / "spacehooks.conf").read_text()
    replacements = [
        ("    listen 443 ssl http2;\n", f"    listen 127.0.0.1:{https_port} ssl http2;\n"),
        ("    listen [::]:443 ssl http2;\n", ""),
        ("    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n"),
        ("    listen [::]:80;\n", ""),
        ("/etc/letsencrypt/live/spaces.example.com/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/spaces.example.com/privkey.pem", str(key)),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};"),
    ]
    for old, new in replacements:
        assert old in text, f"contrib/nginx/spacehooks.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def front():
    base = servers.server_dir("front")
    cert, key = base / "cert.pem", base / "key.pem"
    servers.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN},DNS:*.{DOMAIN}",
                 "-keyout", key, "-out", cert])
    upstream = Upstream().start()
    https_port, http_port = servers.free_port(), servers.free_port()
    (base / "site.conf").write_text(_site_config(https_port, http_port, upstream.port, cert, key))
    (base / "tmp").mkdir()
    conf = base / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes 1;
user root;
pid {base}/nginx.pid;
error_log {base}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {base}/access.log;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    include {base}/site.conf;
}}
""")
    check = servers.run(["/usr/sbin/nginx", "-t", "-p", base, "-c", conf], check=False)
    assert check.returncode == 0, check.stdout
    log = base / "nginx.out"
    with open(log, "ab") as out:
        proc = subprocess.Popen(["/usr/sbin/nginx", "-p", str(base), "-c", str(conf)], stdout=out, stderr=out)
    servers.wait_port(https_port, proc, log)
    ctx = ssl.create_default_context(cafile=str(cert))
    yield {"https": https_port, "http": http_port, "ctx": ctx}
    servers._stop(proc)
    upstream.stop()
    shutil.rmtree(base)


def test_https_passes_the_space_host_and_forwarded_headers(front):
    import json
    request = urllib.request.Request(f"https://127.0.0.1:{front['https']}/headers",
                                     headers={"Host": f"alice-demo.{DOMAIN}"})
    # the certificate is checked against the Space's name, as a browser would
    ctx = front["ctx"]
    opener = urllib.request.build_opener(_SNIHandler(ctx, f"alice-demo.{DOMAIN}"))
    with opener.open(request, timeout=10) as response:
        headers = json.loads(response.read())
    assert headers["Host"] == f"alice-demo.{DOMAIN}"
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Forwarded-Host"] == f"alice-demo.{DOMAIN}"
    assert "Upgrade" not in headers


def test_plain_http_redirects_to_https(front):
    conn = __import__("http.client").client.HTTPConnection("127.0.0.1", front["http"], timeout=10)
    conn.request("GET", "/queue?x=1", headers={"Host": f"bob-app.{DOMAIN}"})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://bob-app.{DOMAIN}/queue?x=1"


def test_websocket_upgrade_passes_through(front):
    async def talk():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"https://127.0.0.1:{front['https']}/queue/join",
                                          ssl=front["ctx"], server_hostname=f"alice-demo.{DOMAIN}",
                                          headers={"Host": f"alice-demo.{DOMAIN}"}) as ws:
                first = await ws.receive_str(timeout=10)
                await ws.send_str("ping")
                second = await ws.receive_str(timeout=10)
                return first, second
    assert asyncio.run(talk()) == (f"hello alice-demo.{DOMAIN}", "echo ping")


class _SNIHandler(urllib.request.HTTPSHandler):
    """Connect to 127.0.0.1 but present and verify the Space's host name (SNI)."""

    def __init__(self, ctx, hostname):
        super().__init__(context=ctx)
        self.ctx, self.hostname = ctx, hostname

    def https_open(self, req):
        import http.client
        hostname, ctx = self.hostname, self.ctx

        class Conn(http.client.HTTPSConnection):
            def connect(self):
                import socket
                sock = socket.create_connection((self.host, self.port), self.timeout)
                self.sock = ctx.wrap_socket(sock, server_hostname=hostname)

        return self.do_open(Conn, req)
