"""The runtime as the Hub's client reads it, and logs as server-sent events (routes and the
owner rules: hubapi.py)."""
from __future__ import annotations

import asyncio
import datetime
import json
import os
from pathlib import Path

from aiohttp import web

from spacehooks import stages
from spacehooks.gateway import pages
from spacehooks.gateway.registry import Registry
from spacehooks.gateway.sleeper import is_static, sleep_seconds

SETTINGS = web.AppKey("settings", object)
REGISTRY = web.AppKey("registry", Registry)
LOG_POLL = 0.5
KEEPALIVE = 15.0


def runtime(settings, space: dict) -> dict:
    """The shape huggingface_hub's SpaceRuntime reads (stage, hardware, gcTimeout), plus ours."""
    v = pages.view(settings, space)
    return {
        "id": space["id"], "stage": v["stage"], "stageLabel": v["stage_label"],
        "hardware": {"current": None if v["stage"] not in stages.ANSWERING
                     else space.get("hardware"), "requested": space.get("hardware")},
        "gcTimeout": None if sleep_seconds(settings, space) < 0 else sleep_seconds(settings, space),
        "sleepTime": sleep_seconds(settings, space),
        "storage": space.get("storage"), "sdk": v["sdk"], "commit": space.get("commit"),
        "errorMessage": space.get("error") or None,
        "domains": [{"domain": v["host"], "stage": "READY"}], "url": v["app_url"],
        "static": is_static(space), "lastRequestAt": space.get("last_request_at"),
    }


def _event(line: str) -> bytes:
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return f"data: {json.dumps({'data': line, 'timestamp': stamp})}\n\n".encode()


async def _log_path(registry: Registry, space_id: str, kind: str) -> Path | None:
    if kind == "run":
        return await registry.call("run_log_path", space_id)
    builds = await registry.call("builds", space_id, 1)
    if not builds:
        return None
    return await registry.call("build_log_path", space_id, builds[0]["id"])


async def logs_handler(request: web.Request) -> web.StreamResponse:
    """Send the log so far, then follow it (new build, rotation) until the client goes away.
    Only through HubApi.logs, which checks who may read it."""
    registry: Registry = request.app[REGISTRY]
    space_id = f"{request.match_info['owner']}/{request.match_info['name']}"
    kind = request.match_info["kind"]
    if await registry.space(space_id) is None:
        return web.json_response({"error": f"Space {space_id} does not exist"}, status=404)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    path, handle, ident, pending = None, None, None, b""
    said_empty = False
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    checks = 0
    try:
        while True:
            if checks % 4 == 0:  # look for a newer build or a rotated file every 2 s
                new_path = await _log_path(registry, space_id, kind)
                if new_path != path or (new_path and _ident(new_path) not in (None, ident)):
                    if handle:  # what was written before the rotation comes first
                        *lines, rest = (pending + handle.read()).split(b"\n")
                        for line in lines + ([rest] if rest else []):
                            await response.write(_event(line.decode(errors="replace")))
                        handle.close()
                    path, handle, pending = new_path, None, b""
            checks += 1
            if handle is None and path is not None and path.exists():
                handle = open(path, "rb")
                ident = _ident(path)
            if handle is None and not said_empty:
                what = "build" if kind == "build" else "container"
                await response.write(f"event: empty\ndata: No {what} log yet.\n\n".encode())
                said_empty = True
            if handle is not None:
                chunk = handle.read(256 * 1024)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        await response.write(_event(line.decode(errors="replace")))
                    last_write = loop.time()
                    continue
            if loop.time() - last_write > KEEPALIVE:
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            await asyncio.sleep(LOG_POLL)
    except ConnectionResetError:  # the reader went away
        pass
    finally:
        if handle:
            handle.close()
    return response


def _ident(path: Path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)
