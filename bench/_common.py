"""Shared pieces of the gateway benchmarks: a throw-away server, a gateway process, a load loop."""
from __future__ import annotations

import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BASE = "localhost/spacehooks/python:3.11"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "b@example.com", "GIT_CONFIG_NOSYSTEM": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Server:
    """A spacehooks server in a temp folder: config, home, repo root, and a gateway process."""

    def __init__(self, **settings):
        self.tmp = Path(tempfile.mkdtemp(prefix="spacehooks-bench-"))
        self.gateway_port = free_port()
        self.values = {"repo_root": str(self.tmp / "git"), "gateway.listen": f"127.0.0.1:{self.gateway_port}",
                       "gateway.public_url": f"http://{{host}}:{self.gateway_port}",
                       "python_versions": {"3.11": BASE},
                       "build": {"ca_bundle": "/etc/ssl/certs/ca-certificates.crt", "push_log_seconds": 0},
                       "run": {"grace_seconds": 2, "memory_mb": 1024, "cpus": 1}, **settings}
        (self.tmp / "git").mkdir()
        self.config = self.tmp / "config.yaml"
        self.config.write_text(yaml.safe_dump(self.values))
        self.env = {**os.environ, "SPACEHOOKS_CONFIG": str(self.config), "SPACEHOOKS_HOME": str(self.tmp / "home"),
                    "PATH": f"{BIN}:{os.environ['PATH']}"}
        os.environ.update({k: self.env[k] for k in ("SPACEHOOKS_CONFIG", "SPACEHOOKS_HOME")})
        from spacehooks import config
        self.settings = config.load()
        self.gateway: subprocess.Popen | None = None  # the one on gateway_port
        self.extra: list[subprocess.Popen] = []

    def _spawn_gateway(self, port: int, env: dict, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"gateway-{port}.log", "ab")
        proc = subprocess.Popen([str(BIN / "spacehooks"), "gateway", *args], env=env, stdout=log, stderr=log)
        wait_port(port)
        return proc

    def start_gateway(self) -> None:
        self.gateway = self._spawn_gateway(self.gateway_port, self.env)

    def start_extra_gateway(self, overrides: dict) -> int:
        """A second gateway process on the same state, with other settings; returns its port."""
        port = free_port()
        values = {**self.values, **overrides, "gateway.listen": f"127.0.0.1:{port}"}
        config = self.tmp / f"config-{port}.yaml"
        config.write_text(yaml.safe_dump(values))
        self.extra.append(self._spawn_gateway(port, {**self.env, "SPACEHOOKS_CONFIG": str(config)}, "--no-sleep"))
        return port

    def host(self, space_id: str) -> str:
        from spacehooks.gateway.registry import host_label
        return f"{host_label(space_id)}.localhost"

    def git(self, *args, cwd=None) -> str:
        return subprocess.run(["git", *args], cwd=cwd, env={**self.env, **GIT_ENV}, check=True, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout

    def create(self, space_id: str, files: dict) -> tuple[Path, Path]:
        bare = self.tmp / "git" / f"{space_id}.git"
        self.git("init", "-q", "--bare", "-b", "main", str(bare))
        subprocess.run([str(BIN / "spacehooks"), "install", str(bare)], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        work = self.tmp / "work" / space_id
        self.git("init", "-q", "-b", "main", str(work))
        self.commit(work, files, "initial")
        return bare, work

    def commit(self, work: Path, files: dict, message: str) -> None:
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        self.git("add", "-A", cwd=work)
        self.git("commit", "-qm", message, cwd=work)

    def push_and_build(self, work: Path, bare: Path) -> None:
        self.git("push", "-q", str(bare), "HEAD:refs/heads/main", cwd=work)
        from spacehooks import worker
        while worker.Worker(self.settings).run_once():
            pass

    def space(self, space_id: str) -> dict:
        from spacehooks import state
        st = state.open(self.settings)
        try:
            return st.get_space(space_id)
        finally:
            st.close()

    def close(self) -> None:
        for proc in [self.gateway, *self.extra]:
            if proc:
                proc.terminate()
                proc.wait(20)
        from spacehooks import engine, state
        st = state.open(self.settings)
        ours = {s["id"] for s in st.list_spaces()}
        st.close()
        eng = engine.get(self.settings)
        for container in eng.containers("spacehooks.space"):
            if container.labels.get("spacehooks.space") in ours:
                eng.remove(container.name, stop_timeout=0)


async def load(url: str, host: str | None, requests: int, concurrency: int) -> dict:
    """Send `requests` GETs over `concurrency` keep-alive connections; latency in ms."""
    latencies: list[float] = []
    failures = 0
    headers = {"Host": host} if host else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = iter(range(requests))

        async def one_connection():
            nonlocal failures
            for _ in remaining:
                started = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            failures += 1
                except aiohttp.ClientError:
                    failures += 1
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": requests / elapsed, "median_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1], "failed": failures}


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise SystemExit(f"wrk printed a latency this script cannot read: {text!r}")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(url: str, host: str | None, seconds: float, concurrency: int) -> dict:
    """One wrk run (one thread, keep-alive connections); failures are socket errors and non-2xx."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", url]
    if host:
        command[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(command, check=True, text=True, stdout=subprocess.PIPE).stdout
    if "Requests/sec" not in out or not re.search(r"^\s*50%\s+[\d.]+", out, re.M):
        raise SystemExit(f"wrk against {url} gave no usable result:\n{out}")
    failed = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    failed += sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            # line starts only: "89.50%" in the +/- Stdev column is not the median
            "median_ms": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),
            "p99_ms": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)), "failed": failed}
