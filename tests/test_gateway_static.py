"""Static Spaces: written once per deploy into a folder of blobs, answered by the relay with
sendfile (and by the app the same way): ETag/304, ranges, gzip/brotli, folders, the 404 page,
hostile paths, and bounded memory under many slow readers of a large file."""
import gzip
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time

import brotli
import pytest
import requests
import yaml

from gateway_support import *  # noqa: F401,F403 - fixtures
from gateway_support import GatewayUnderTest, free_port
from helpers import git, push

STATIC_README = "---\ntitle: Static\nemoji: 📄\ncolorFrom: red\ncolorTo: pink\nsdk: static\n---\n"
PAGE = "<p>" + "".join(f"static page line {i}\n" for i in range(9000)) + "</p>\n"  # ~200 KB of text
BINARY = bytes(range(256)) * 400


def static_space(engine, space_id, files, links=None):
    bare, work = engine.create(space_id, files)
    for name, target in (links or {}).items():
        os.symlink(target, work / name)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "files", "--allow-empty", cwd=work)
    assert push(work, str(bare)).returncode == 0
    assert engine.drain() == 1
    return bare, work


def fetch(gw, host, target, headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "app-only"])
def test_static_space_answers_from_its_deploy_folder(engine, loops, relay):
    files = {"README.md": STATIC_README, "index.html": "<h1>home</h1>\n", "page.html": PAGE,
             "docs/index.html": "docs\n", "app.js": "console.log('static');\n" * 50, "data.bin": BINARY,
             "style.css": "body { color: black; }\n", "dossier/été.html": "accents\n"}
    _, work = static_space(engine, "alice/site", files,
                           links={"inside.html": "page.html", "outside": "../../../../etc/passwd", "etc": "/etc"})
    commit = engine.space("alice/site")["commit"]
    blob = {name: git("rev-parse", f"HEAD:{name}", cwd=work).stdout.strip() for name in files}
    folder = engine.home / "static" / "alice" / "site" / commit
    names = {p.name for p in folder.iterdir()}
    # one file per blob, named by its id; text worth compressing has its .gz and .br beside it
    assert {blob["page.html"], blob["page.html"] + ".gz", blob["page.html"] + ".br", blob["app.js"] + ".gz",
            blob["data.bin"], blob["index.html"], "manifest.json"} <= names
    assert blob["index.html"] + ".gz" not in names and blob["data.bin"] + ".gz" not in names

    gw = GatewayUnderTest(engine, loops, **{"gateway.relay": relay})
    host = gw.host("alice/site")
    try:
        status, headers, body = fetch(gw, host, "/")
        assert (status, body, headers["content-type"], headers["etag"]) == (
            200, b"<h1>home</h1>\n", "text/html; charset=utf-8", f'"{blob["index.html"]}"')
        before = gw.listening.relay.static if relay else 0
        assert fetch(gw, host, "/", {"If-None-Match": headers["etag"]})[::2] == (304, b"")
        assert fetch(gw, host, "/", {"If-None-Match": 'W/"other", ' + headers["etag"]})[0] == 304
        assert fetch(gw, host, "/", {"If-None-Match": '"other"'})[0] == 200

        status, headers, body = fetch(gw, host, "/page.html", {"Accept-Encoding": "gzip, deflate, br"})
        assert (status, headers["content-encoding"], headers["vary"]) == (200, "br", "Accept-Encoding")
        assert brotli.decompress(body) == PAGE.encode() and len(body) == int(headers["content-length"])
        status, headers, body = fetch(gw, host, "/page.html", {"Accept-Encoding": "gzip"})
        assert (status, headers["content-encoding"], gzip.decompress(body)) == (200, "gzip", PAGE.encode())
        status, headers, body = fetch(gw, host, "/page.html", {"Accept-Encoding": "gzip;q=0, br;q=0"})
        assert (status, body, "content-encoding" in headers) == (200, PAGE.encode(), False)
        assert fetch(gw, host, "/inside.html")[2] == PAGE.encode()
        assert fetch(gw, host, "/data.bin", {"Accept-Encoding": "gzip"})[1:] == (
            {**fetch(gw, host, "/data.bin")[1], "content-type": "application/octet-stream"}, BINARY)
        assert fetch(gw, host, "/app.js")[1]["content-type"] == "text/javascript; charset=utf-8"
        status, headers, body = fetch(gw, host, "/page.html", method="HEAD")
        assert (status, int(headers["content-length"]), body) == (200, len(PAGE), b"")

        # ranges: one range of the plain file, 416 past the end, If-Range that no longer holds
        size = len(PAGE)
        status, headers, body = fetch(gw, host, "/page.html", {"Range": "bytes=100-199", "Accept-Encoding": "br"})
        assert (status, headers["content-range"], body) == (206, f"bytes 100-199/{size}", PAGE[100:200].encode())
        assert "content-encoding" not in headers
        assert fetch(gw, host, "/page.html", {"Range": "bytes=-10"})[2] == PAGE[-10:].encode()
        # a range of a small file first: the whole file afterwards is still the whole file
        assert fetch(gw, host, "/style.css", {"Range": "bytes=0-3"})[::2] == (206, b"body")
        assert fetch(gw, host, "/style.css")[::2] == (200, files["style.css"].encode())
        assert fetch(gw, host, "/data.bin", {"Range": "bytes=102300-"})[2] == BINARY[102300:]
        status, headers, _ = fetch(gw, host, "/page.html", {"Range": f"bytes={size}-"})
        assert (status, headers["content-range"]) == (416, f"bytes */{size}")
        assert fetch(gw, host, "/page.html", {"Range": "bytes=0-9", "If-Range": '"old"'})[::2] == (200, PAGE.encode())

        # folders, hostile paths, the 404 page of the app path
        assert fetch(gw, host, "/docs")[:2][0] == 301
        assert fetch(gw, host, "/docs")[1]["location"] == "/docs/"
        assert fetch(gw, host, "/docs?a=1")[1]["location"] == "/docs/?a=1"
        assert fetch(gw, host, "/docs/")[2] == b"docs\n"
        assert fetch(gw, host, "/dossier/%C3%A9t%C3%A9.html")[::2] == (200, b"accents\n")
        assert fetch(gw, host, "/dossier/%C3%A9t%C3%A9")[::2] == (404, "404: dossier/été is not in this Space\n".encode())
        assert fetch(gw, host, "/nope.png")[::2] == (404, b"404: nope.png is not in this Space\n")
        for target in ("/" + blob["page.html"], "/manifest.json"):  # the folder's own names mean nothing
            assert fetch(gw, host, target)[0] == 404, target
        if relay:
            assert gw.listening.relay.static - before >= 20  # answered by the relay itself
    finally:
        gw.stop()


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "app-only"])
def test_hostile_paths_never_redirect_off_site_nor_leave_the_commit(engine, loops, relay):
    static_space(engine, "alice/paths", {"README.md": STATIC_README, "index.html": "home\n", "docs/index.html": "docs\n",
                                         "evil.com/index.html": "folder\n"},
                 links={"outside": "../../../../etc/passwd", "etc": "/etc", "up": ".."})
    gw = GatewayUnderTest(engine, loops, **{"gateway.relay": relay})
    host = gw.host("alice/paths")
    try:
        fetch(gw, host, "/")
        # `//x` must never become `Location: //x/`: browsers take that for the host x
        for target, location in (("//docs", "/docs/"), ("//evil.com", "/evil.com/"), ("///evil.com", "/evil.com/"),
                                 ("/%2Fevil.com", "/evil.com/"), ("/./evil.com?next=//x", "/evil.com/?next=//x"),
                                 ("/%5Cevil.com/../evil.com", "/evil.com/")):
            status, headers, _ = fetch(gw, host, target)
            assert (status, headers.get("location")) == (301, location), target
        for target in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/outside", "/etc/passwd", "/etc/hostname",
                       "/up/up/etc/passwd", "/index.html%00.png", "/.git/config", "/.git/HEAD", "/%00"):
            assert fetch(gw, host, target)[0] == 404, target
    finally:
        gw.stop()


def test_relay_answers_pipelined_static_requests_in_order(engine, loops):
    static_space(engine, "alice/pipe", {"README.md": STATIC_README, "index.html": "<h1>home</h1>\n", "page.html": PAGE})
    gw = GatewayUnderTest(engine, loops)
    host = gw.host("alice/pipe")
    try:
        fetch(gw, host, "/")  # the app loads the deploy folder; then the relay answers
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            one = f"GET /%s HTTP/1.1\r\nHost: {host}\r\n\r\n"
            sock.sendall("".join(one % p for p in ["index.html", "page.html"] * 50 + ["nope"]).encode())
            data = b""
            while not data.endswith(b"404: nope is not in this Space\n"):
                chunk = sock.recv(1 << 20)
                assert chunk, data[-200:]
                data += chunk
        assert data.count(b"<h1>home</h1>\n") == 50 and data.count(PAGE.encode()) == 50
        assert data.index(b"<h1>home</h1>") < data.index(PAGE.encode()[:50])
    finally:
        gw.stop()


def test_a_deploy_folder_removed_by_gc_is_not_served_again_and_a_missing_one_is_rewritten(engine, loops):
    bare, work = static_space(engine, "alice/gc", {"README.md": STATIC_README, "index.html": "v1\n"})
    first = engine.space("alice/gc")["commit"]
    gw = GatewayUnderTest(engine, loops)
    host = gw.host("alice/gc")
    try:
        assert fetch(gw, host, "/")[2] == b"v1\n"
        (work / "index.html").write_text("v2\n")
        git("commit", "-qam", "v2", cwd=work)
        assert push(work, str(bare)).returncode == 0
        assert engine.drain() == 1
        from spacehooks.admin import images
        images.gc(engine.settings)  # the first deploy's folder goes at once
        assert not (engine.home / "static" / "alice" / "gc" / first).exists()
        assert fetch(gw, host, "/")[2] == b"v2\n"
        # a deploy folder lost by hand (or written by an older version) is written again
        shutil.rmtree(engine.home / "static")
        time.sleep(1.1)
        gw.stop()
        gw = GatewayUnderTest(engine, loops)
        assert fetch(gw, host, "/")[2] == b"v2\n"
    finally:
        gw.stop()


def test_a_static_deploy_that_cannot_be_written_fails_its_build_and_the_old_version_serves(engine, loops):
    static_root = engine.home / "static"
    static_root.mkdir(parents=True)
    # a real full disk: a 1 MB tmpfs where deploy folders go
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(static_root)], check=True)
    gw = None
    try:
        bare, work = static_space(engine, "alice/full", {"README.md": STATIC_README, "index.html": "v1\n"})
        first = engine.space("alice/full")["commit"]
        (work / "index.html").write_text("v2\n")
        (work / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        git("add", "-A", cwd=work)
        git("commit", "-qm", "v2", cwd=work)
        assert push(work, str(bare)).returncode == 0
        assert engine.drain() == 1
        space = engine.space("alice/full")
        folder = static_root / "alice" / "full"
        # the unprivileged writer of the commit's files is the first to find the disk full
        message = (f"build #2 failed: cannot write the files of commit {git('rev-parse', 'HEAD', cwd=work).stdout[:12]}"
                   ": big.bin: No space left on device")
        assert (space["stage"], space["commit"], space["error"]) == ("RUNNING", first, message)
        assert sorted(p.name for p in folder.iterdir()) == [first]  # the half-written folder is gone
        build_log = (engine.home / "logs" / "builds" / "alice" / "full" / "2.log").read_text()
        assert "BUILD_ERROR: cannot write the files of commit " in build_log
        gw = GatewayUnderTest(engine, loops)
        assert fetch(gw, gw.host("alice/full"), "/")[::2] == (200, b"v1\n")
    finally:
        if gw is not None:
            gw.stop()
        subprocess.run(["umount", "--lazy", str(static_root)], check=True)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


READERS = int(os.environ.get("SPACEHOOKS_TEST_SLOW_READERS", "50"))


def test_many_slow_readers_of_a_large_file_keep_serve_small(engine, tmp_path):
    """serve's memory stays within its idle size + 100 MB while 50 clients read a 300 MB file
    slowly, goes back afterwards, and the gallery answers meanwhile."""
    big = 300 * 1024 * 1024
    bare, work = engine.create("alice/big", {"README.md": STATIC_README, "index.html": "big\n"})
    with open(work / "big.bin", "wb") as fh:  # zeros: a few hundred KB in git, 300 MB deployed
        fh.truncate(big)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "big", cwd=work)
    assert push(work, str(bare)).returncode == 0
    (work / "big.bin").unlink()
    assert engine.drain() == 1
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({**engine.values, "gateway.listen": f"127.0.0.1:{port}"}))
    env = {**os.environ, **engine.env(), "SPACEHOOKS_CONFIG": str(config)}
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "spacehooks", "serve"], env=env, stdout=log, stderr=log)
    readers: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and serve.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        host = {"Host": "alice-big.localhost"}
        for _ in range(3):  # the deploy folder loaded, the gallery rendered, buffers warm
            assert requests.get(f"http://127.0.0.1:{port}/big.bin", headers={**host, "Range": "bytes=0-9"},
                                timeout=10).content == b"\0" * 10
            requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        time.sleep(1)
        idle = rss_mb(serve.pid)
        for _ in range(READERS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: alice-big.localhost\r\n\r\n")
            readers.append(sock)
        peak, got, gallery_ok = idle, [0] * READERS, 0
        started = time.monotonic()
        while time.monotonic() - started < 12:  # each reader takes 64 KB per round: slow
            for i, sock in enumerate(readers):
                sock.settimeout(5)
                try:
                    got[i] += len(sock.recv(64 * 1024))
                except socket.timeout:
                    raise AssertionError(f"reader {i} got nothing for 5 s; got so far: {got}") from None
            peak = max(peak, rss_mb(serve.pid))
            if time.monotonic() - started > 4 and not gallery_ok:
                gallery = requests.get(f"http://127.0.0.1:{port}/", timeout=5)  # no answer in 5 s fails
                gallery_ok = gallery.status_code == 200 and "alice/big" in gallery.text
            time.sleep(0.05)
        assert gallery_ok
        assert min(got) > 64 * 1024 and max(got) < big  # all still reading, none finished
        for sock in readers:
            sock.close()
        readers = []
        time.sleep(2)
        after = rss_mb(serve.pid)
        print(f"serve RSS: idle {idle:.0f} MB, peak {peak:.0f} MB with {READERS} readers, {after:.0f} MB after")
        assert (round(idle), peak - idle < 100, after - idle < 20) == (round(idle), True, True), (idle, peak, after)
    finally:
        for sock in readers:
            sock.close()
        serve.terminate()
        serve.wait(30)
        log.close()
        shutil.rmtree(engine.home / "static", ignore_errors=True)
