"""What the fence tests attack with: a probing Space app, token-answering listeners on the
host and in a network namespace of the test's own (iproute2), and the host's addresses.

A probe counts as a success only when the far end answers with the test's token, so a
connection refused by the container's own loopback, or answered by something else, is a
failure like a timeout.
"""
from __future__ import annotations

import ipaddress
import json
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path

# The Space's app: HTTP on 8000 (GET /probe?q=<json>) and a token listener on 9000 (tcp and
# udp); `python probe.py build '<json>'` probes from a build step and prints the results.
PROBE_APP = r'''
import http.server, json, socket, ssl, sys, threading, urllib.parse, urllib.request

def gateway():
    for line in open("/proc/net/route"):
        f = line.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(bytes.fromhex(f[2])[::-1])

def probe(proto, host, port, token):
    host = gateway() if host == "gateway" else host
    if proto == "unix":  # a Podman API socket, if one were reachable at that path
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2); s.connect(host); s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return "answered" if b"OK" in s.recv(200) else "other"
        except OSError as exc:
            return "failed " + type(exc).__name__
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        family, kind, _, _, addr = socket.getaddrinfo(host, port, type=kind)[0]
        with socket.socket(family, kind) as s:
            s.settimeout(2)
            if proto == "tcp":
                s.connect(addr)
                data = s.recv(200)
            else:
                s.sendto(b"ping", addr)
                data = s.recvfrom(200)[0]
    except OSError as exc:
        return "failed " + type(exc).__name__
    return "answered" if token.encode() in data else "other " + data[:40].decode(errors="replace")

def index(url):
    try:
        ctx = ssl.create_default_context(cafile="/home/user/app/ca.pem")
        with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
            return "answered %d" % r.status
    except Exception as exc:
        return "failed %s" % exc

def run_all(query):
    out = {}
    def one(t):
        out[" ".join(map(str, t))] = probe(*t, query["token"])
    threads = [threading.Thread(target=one, args=(t,)) for t in query["targets"]]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if query.get("index"):
        out["index"] = index(query["index"])
    return out

def token_listeners(token):
    def tcp():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 9000)); s.listen()
        while True:
            c, _ = s.accept(); c.sendall(token.encode()); c.close()
    def udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9000))
        while True:
            _, peer = s.recvfrom(100); s.sendto(token.encode(), peer)
    for f in (tcp, udp):
        threading.Thread(target=f, daemon=True).start()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parsed = urllib.parse.urlparse(self.path)
        body = b"probe app"
        if parsed.path == "/probe":
            body = json.dumps(run_all(json.loads(urllib.parse.parse_qs(parsed.query)["q"][0]))).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

if sys.argv[1] == "build":
    for target, result in run_all(json.loads(sys.argv[2])).items():
        sys.stdout.write("PROBE %s => %s\n" % (target, result))  # one write: one log line
        sys.stdout.flush()
else:
    token_listeners(open("/home/user/app/token").read().strip())
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
'''

README = "---\ntitle: Probe\nsdk: docker\napp_port: 8000\nstartup_duration_timeout: 60s\n---\n"
INDEX_URL = "https://pypi.org/simple/pip/"  # the package index Spaces must still reach
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # the host's, trusting the TLS-inspecting path


def probe_space_files(token: str, build_query: dict | None = None) -> dict:
    lines = ["FROM localhost/spacehooks/python:3.11", "WORKDIR /home/user/app", "COPY --chown=1000:1000 . ."]
    if build_query is not None:
        lines.append("RUN python probe.py build " + json.dumps(json.dumps(build_query)))
    lines.append('CMD ["python", "probe.py", "serve"]')
    return {"README.md": README, "probe.py": PROBE_APP, "token": token + "\n",
            "ca.pem": Path(CA_BUNDLE).read_text(), "Dockerfile": "\n".join(lines) + "\n"}


def build_results(log: str) -> dict:
    out = {}
    for line in log.splitlines():
        if line.startswith("PROBE "):
            target, _, result = line[len("PROBE "):].partition(" => ")
            out[target] = result
    return out


class TokenListener:
    """TCP and UDP on one port, answering every connection or datagram with the token; on all
    of the host's addresses (a dual-stack socket), or inside a network namespace."""

    SERVER = r'''
import socket, sys, threading
token, port = sys.argv[1].encode(), int(sys.argv[2])
t = socket.socket(socket.AF_INET6); t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("::", port)); t.listen(50)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", port))
def udp():
    while True:
        _, peer = u.recvfrom(100); u.sendto(token, peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept(); c.sendall(token); c.close()
'''

    def __init__(self, token: str, netns: str | None = None):
        self.port = free_port()
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", self.SERVER, token, str(self.port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self):
        self.proc.kill()
        self.proc.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::", 0))
        return s.getsockname()[1]


class Lan:
    """A network namespace of the test's own behind a veth pair: the host side is one more
    host address (`host_v4`), the far side (`peer_v4`) stands for a machine on a private
    network. Addresses come from 10.213.0.0/16, checked to be unused on this host."""

    def __init__(self):
        routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "table", "all"], capture_output=True,
                                           text=True, check=True).stdout)
        used = []
        for route in routes:
            try:
                used.append(ipaddress.ip_network(route.get("dst", ""), strict=False))
            except ValueError:  # "default", or a broadcast/local entry
                continue
        for _ in range(50):
            net = ipaddress.ip_network(f"10.213.{random.randrange(256)}.{random.randrange(64) * 4}/30")
            if not any(net.overlaps(u) for u in used):
                break
        else:
            raise AssertionError("no unused /30 in 10.213.0.0/16 on this host")
        self.net = net
        self.host_v4, self.peer_v4 = str(net[1]), str(net[2])
        tag = f"{random.randrange(16 ** 6):06x}"
        self.ns, self.host_if, self.peer_if = f"shtest{tag}", f"shth{tag}", f"shtp{tag}"
        for cmd in (["ip", "netns", "add", self.ns],
                    ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if],
                    ["ip", "link", "set", self.peer_if, "netns", self.ns],
                    ["ip", "addr", "add", f"{self.host_v4}/30", "dev", self.host_if],
                    ["ip", "link", "set", self.host_if, "up"],
                    ["ip", "-n", self.ns, "addr", "add", f"{self.peer_v4}/30", "dev", self.peer_if],
                    ["ip", "-n", self.ns, "link", "set", self.peer_if, "up"],
                    ["ip", "-n", self.ns, "link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True)

    def close(self):
        subprocess.run(["ip", "link", "del", self.host_if], check=False)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                              "169.254.0.0/16", "100.64.0.0/10", "fc00::/7")]


def host_addresses(own_interfaces: tuple[str, ...]) -> list[str]:
    """Every address of this host that a probe may be sent to: loopback, public-range ones,
    and any address on an interface this test (or spacehooks for this test) made. Real
    private-range addresses of other interfaces are left alone."""
    out = []
    for link in json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout):
        ours = link["ifname"].startswith(own_interfaces)
        for info in link.get("addr_info", []):
            address = ipaddress.ip_address(info["local"])
            if address.version == 6 and address.is_link_local:
                if ours:  # reachable from a container only through its own link
                    out.append(f"{address}%eth0")
                continue
            if ours or address.is_loopback or not any(address in net for net in PRIVATE):
                out.append(str(address))
    return out
