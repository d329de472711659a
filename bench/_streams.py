"""Shared pieces of bench/websocket and bench/sse: the app in a container, the four targets
(the app alone, the gateway as served, the gateway with `gateway.relay: false`, nginx), and a
load generator run as a process of its own (raw asyncio protocols on uvloop: an aiohttp client
would cost more CPU than the proxies it measures).

    python bench/_streams.py ws  URL HOST CONNECTIONS SECONDS   -> {"rate": messages/s, "failed": n}
    python bench/_streams.py sse URL HOST CONNECTIONS SECONDS   -> {"rate": events/s, "failed": n}
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
APP = (HERE.parent / "tests" / "stream_app.py").read_text()  # the tests' app: stdlib only
# nginx as the usual guides configure it for WebSockets and event streams: Upgrade and
# Connection passed on, no buffering, one worker like the gateway's one process.
NGINX = """
worker_processes 1;
error_log {tmp}/nginx-error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream space {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://space;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
"""
PAYLOAD = b"0123456789abcdef"  # one echo message
MASK = b"\x11\x22\x33\x44"
FRAME = bytes((0x81, 0x80 | len(PAYLOAD))) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
ECHO = 2 + len(PAYLOAD)  # the echo comes back unmasked
SSE_EVENT = 64  # bytes of one event's `data: ...\n\n`


def targets_up(server, args_seconds=None):
    """Start the container, both gateways and nginx; returns (targets, cleanup)."""
    from _common import BASE, free_port, wait_port
    upstream = free_port()
    name = f"spacehooks-bench-{upstream}"
    subprocess.run(["podman", "run", "-d", "--rm", "--name", name, "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                    "-p", f"127.0.0.1:{upstream}:8000", BASE, "python3", "-c", APP],
                   check=True, stdout=subprocess.DEVNULL)
    procs = []

    def cleanup():
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        wait_port(upstream)
        from spacehooks import state
        st = state.open(server.settings)
        st.ensure_space("bench/streams", "/nonexistent")
        st.update_space("bench/streams", stage="RUNNING", port=upstream, sleep_seconds=-1, config={"sdk": "docker"})
        st.close()
        server.start_gateway()
        app_only = server.start_extra_gateway({"gateway.relay": False})
        nginx_port = free_port()
        tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, upstream=upstream, port=nginx_port))
        procs.append(subprocess.Popen(["/usr/sbin/nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                                       "-g", "daemon off;"]))
        wait_port(nginx_port)
    except BaseException:
        cleanup()
        raise
    host = server.host("bench/streams")
    # the proxies' processes, for their CPU per message (nginx's worker counted with its master)
    targets_up.pids = {"gateway": server.gateway.pid, "relay off": server.extra[0].pid, "nginx": procs[0].pid}
    targets = {
        "app alone": (f"http://127.0.0.1:{upstream}", None),
        "gateway": (f"http://127.0.0.1:{server.gateway_port}", host),
        "relay off": (f"http://127.0.0.1:{app_only}", host),
        "nginx": (f"http://127.0.0.1:{nginx_port}", "bench-streams.localhost"),
    }
    return targets, cleanup


def measure(kind: str, url: str, host: str | None, connections: int, seconds: float) -> dict:
    out = subprocess.run([sys.executable, __file__, kind, url, host or "-", str(connections), f"{seconds:g}"],
                         check=True, text=True, stdout=subprocess.PIPE, timeout=seconds + 60).stdout
    return json.loads(out)


def run_rounds(kind: str, targets: dict, connections: int, seconds: float, rounds: int) -> dict:
    from _common import cpu_seconds
    pids = getattr(targets_up, "pids", {})
    results = {k: [] for k in targets}
    for url, host in targets.values():  # warm-up
        measure(kind, url, host, connections, 1)
    for _ in range(rounds):  # interleaved so drift hits all targets alike
        for name, (url, host) in targets.items():
            cpu = cpu_seconds(pids[name]) if name in pids else None
            result = measure(kind, url, host, connections, seconds)
            if cpu is not None and result["rate"]:
                # CPU of the proxy per message over the whole run of the load process (its
                # start and the 0.2 s before counting included: the same for every target)
                result["cpu_us"] = (cpu_seconds(pids[name]) - cpu) * 1e6 / (result["rate"] * seconds)
            results[name].append(result)
    return results


def report(results: dict, unit: str, header: str) -> None:
    print(header)
    print(f"{'target':<10} {unit:>12} {'failed':>7} {'CPU us each':>12}")
    medians, cpu = {}, {}
    for name, rounds in results.items():
        medians[name] = statistics.median(r["rate"] for r in rounds)
        shown = ""
        if all("cpu_us" in r for r in rounds):
            cpu[name] = statistics.median(r["cpu_us"] for r in rounds)
            shown = f"{cpu[name]:.1f}"
        print(f"{name:<10} {medians[name]:>12.0f} {sum(r['failed'] for r in rounds):>7} {shown:>12}")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} cores)")
    if "gateway" in cpu and "nginx" in cpu:
        # one process each: with a core to itself, a proxy's rate is 1 / its CPU per message
        print(f"gateway/nginx by CPU per message (nginx's / the gateway's): {cpu['nginx'] / cpu['gateway']:.2f}")
    ratios = sorted(g["rate"] / n["rate"] for g, n in zip(results["gateway"], results["nginx"]))
    print(f"gateway/nginx per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"gateway/app alone: {medians['gateway'] / medians['app alone']:.2f}; "
          f"gateway/relay off (the aiohttp app's path): {medians['gateway'] / medians['relay off']:.2f}")
    ratio = medians["gateway"] / medians["nginx"]
    print(f"gateway/nginx {unit} ratio: {ratio:.2f} (target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")


# -- the load generator (its own process) ---------------------------------------------------

def _request(path: str, host: str, upgrade: bool) -> bytes:
    extra = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") if upgrade else b""
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


class Client(asyncio.Protocol):
    def __init__(self, kind: str, request: bytes, counts: dict):
        self.kind, self.request, self.counts = kind, request, counts
        self.head = b""
        self.in_body = False
        self.pending = 0  # bytes of echoes seen past the last whole one
        self.tail = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head[9:12]
            if status not in (b"101", b"200"):
                self.counts["failed"] += 1
                self.transport.close()
                return
            self.in_body = True
            data = self.head[end + 4:]
            if self.kind == "ws":
                self.transport.write(FRAME)
        if self.kind == "ws":
            self.pending += len(data)
            whole, self.pending = divmod(self.pending, ECHO)
            if whole:
                self.counts["n"] += whole
                self.transport.write(FRAME * whole)
        else:
            seen = self.tail + data
            self.counts["n"] += seen.count(b"data: ")
            self.tail = seen[-5:]

    def connection_lost(self, exc):
        if not self.counts["stopping"]:
            self.counts["failed"] += 1


async def _load(kind: str, url: str, host: str, connections: int, seconds: float) -> dict:
    parts = urlsplit(url)
    host = parts.netloc if host == "-" else host
    path = "/ws" if kind == "ws" else f"/sse?n=0&interval=0&size={SSE_EVENT}"
    request = _request(path, host, kind == "ws")
    counts = {"n": 0, "failed": 0, "stopping": False}
    loop = asyncio.get_running_loop()
    transports = []
    for _ in range(connections):
        transport, _ = await loop.create_connection(lambda: Client(kind, request, counts), parts.hostname, parts.port)
        transports.append(transport)
    await asyncio.sleep(0.2)  # every connection answered and flowing
    start_n, started = counts["n"], time.perf_counter()
    await asyncio.sleep(seconds)
    n, elapsed = counts["n"] - start_n, time.perf_counter() - started
    counts["stopping"] = True
    for transport in transports:
        transport.close()
    return {"rate": n / elapsed, "failed": counts["failed"]}


if __name__ == "__main__":
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    kind, url, host, connections, seconds = sys.argv[1:6]
    print(json.dumps(run(_load(kind, url, host, int(connections), float(seconds)))))
