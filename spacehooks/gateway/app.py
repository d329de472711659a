"""Routing: `<owner>-<name>.<domain>` goes to the Space, the main domain gets the pages and API."""
from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict

from spacehooks import stages
from spacehooks.access import accounts
from spacehooks.admin import sshcommands
from spacehooks.gateway import api, githttp, hubrepos, pages, settingspage
from spacehooks.gateway.access import Door
from spacehooks.gateway.metrics import Metrics
from spacehooks.gateway.proxy import NotRepeated, Proxy, Unreachable
from spacehooks.gateway.registry import Registry
from spacehooks.gateway.sleeper import SLEEPING, Sleeper, WAKE_TIMEOUT, is_static
from spacehooks.gateway.staticspace import Sites, StaticFiles
from spacehooks.stages import ANSWERING

log = logging.getLogger("spacehooks.gateway")

STATIC = Path(__file__).parent / "static"
# Browsers wait this long for a waking Space before they get the auto-refreshing page.
BROWSER_WAKE_WAIT = 3.0
CUSTOM_HEADERS = ("cross-origin-embedder-policy", "cross-origin-opener-policy", "cross-origin-resource-policy")
SETTINGS, REGISTRY, SLEEPER = api.SETTINGS, api.REGISTRY, web.AppKey("sleeper", Sleeper)
SITES = web.AppKey("sites", Sites)  # static Spaces' deploy folders, shared with the relay
METRICS = web.AppKey("metrics", Metrics)  # counted here and by the relay
SPACE_ID = web.RequestKey("space_id", str)  # set on a request a Space answers (its metrics label)
# Pauses before each retry against an unchanged port (a freshly switched port is tried at once):
# a published port can refuse connections for a moment while Podman rewires another container.
RETRY_PAUSES = (0.05, 0.2, 0.4, 0.8, 1.5)
ERROR_STAGES = set(stages.ERRORS)


def wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def space_label(settings, host: str) -> str | None:
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    host = host.lower().rstrip(".")
    suffix = "." + settings["gateway.domain"].lower()
    return host[: -len(suffix)] if host.endswith(suffix) and len(host) > len(suffix) else None


def space_headers(settings, space: dict) -> tuple[list, list]:
    """Headers every answer at the Space's address carries, as (replacing the app's, added):
    README custom_headers, and the embedding rule."""
    config = space.get("config") or {}
    custom = config.get("custom_headers") if isinstance(config.get("custom_headers"), dict) else {}
    chosen = [(k, str(v)) for k, v in custom.items() if str(k).lower() in CUSTOM_HEADERS]
    added = []
    if config.get("disable_embedding") is True:
        # Only the Space's own page on this server may frame it.
        added.append(("Content-Security-Policy",
                      f"frame-ancestors 'self' {pages.public_url(settings, settings['gateway.domain'])}"))
    return chosen, added


def header_setter(settings, space: dict):
    chosen, added = space_headers(settings, space)

    def apply(headers: CIMultiDict) -> None:
        for key, value in chosen:
            headers[key] = value
        for key, value in added:
            headers.add(key, value)
    return apply


class Gateway:
    def __init__(self, settings, registry: Registry, sleeper: Sleeper):
        self.settings = settings
        self.registry = registry
        self.sleeper = sleeper
        self.proxy = Proxy()
        self.sites = Sites(settings)
        self.static = StaticFiles(self.sites)
        self.door = Door(settings, registry)

    async def space_request(self, request: web.Request, label: str) -> web.StreamResponse:
        settings = self.settings
        space_id = await self.registry.resolve_host(label)
        if space_id is None:
            return pages.not_found(settings, f"Nothing is served at {request.host}.")
        space = await self.registry.space(space_id)
        if space is not None and space.get("private"):
            # members only; to anyone else it is not there (the relay sends every request to a
            # private Space here: one admission point for all kinds of request)
            try:
                who = await self.door.identity(request, ours_only=True)
            except web.HTTPUnauthorized:
                who = None  # a stale cookie or token: not a member
            if not accounts.may(who, accounts.READ, space):
                return pages.not_found(settings, f"Nothing is served at {request.host}.")
        request[SPACE_ID] = space_id
        if space is not None and (space.get("stage") not in ANSWERING or not (space.get("port") or is_static(space))):
            # the snapshot may predate a deploy that has just finished: ask the store before saying no
            space = await self.registry.space(space_id, fresh=True) or space
        self.registry.touch(space_id)
        apply_headers = header_setter(settings, space)
        stage = space.get("stage")
        if is_static(space):
            if space.get("commit") and stage not in stages.SHUT:
                return await self.static.serve(request, space, apply_headers,
                                               lambda: self.registry.space(space_id, fresh=True))
        elif stage == SLEEPING:
            answer = await self._wake(request, space)
            if answer is not None:
                return answer
            space = await self.registry.space(space_id)
        if stage not in ANSWERING and stage != SLEEPING or not space.get("port"):
            return self._not_serving(request, space)
        return await self._forward(request, space, apply_headers)

    async def _forward(self, request, space, apply_headers) -> web.StreamResponse:
        space_id = space["id"]

        async def ports(tries: int):  # the engine's address of the serving version (registry.py)
            address = space.get("address")
            if address:
                yield address
            for pause in RETRY_PAUSES[:tries - 1]:
                fresh = await self.registry.space(space_id, fresh=True)
                if not fresh or not fresh.get("address"):
                    return
                if fresh["address"] == address:
                    await asyncio.sleep(pause)  # same container: give a restarting one a moment
                address = fresh["address"]
                yield address

        streaming = request.headers.get("Upgrade", "").lower() == "websocket" \
            or "text/event-stream" in request.headers.get("Accept", "")
        if streaming:
            self.registry.stream_opened(space_id)
        try:
            try:
                return await self.proxy.forward(request, ports, apply_headers)
            except Unreachable:
                # put to sleep while the request was on its way: wake it like any sleeping Space
                fresh = await self.registry.space(space_id, fresh=True)
                if not fresh or fresh.get("stage") != SLEEPING or request.body_exists:
                    raise
                answer = await self._wake(request, fresh)
                if answer is not None:
                    return answer
                space = await self.registry.space(space_id)
                return await self.proxy.forward(request, ports, apply_headers)
        except NotRepeated as exc:
            log.warning("%s: the app dropped a %s without answering (not sent again): %s", space_id, request.method, exc)
            return web.Response(status=502, text=f"502: Space {space_id} closed the connection without answering; "
                                "the request was not sent again (it may have reached the app, and repeating it is not safe)\n")
        except Unreachable as exc:
            log.warning("%s: no answer from its container: %s", space_id, exc)
            fresh = await self.registry.space(space_id, fresh=True)
            if fresh and fresh.get("stage") not in ANSWERING and fresh.get("stage") != SLEEPING:
                return self._not_serving(request, fresh)  # e.g. it crashed for good: say why
            if wants_html(request):
                return pages.space_status(self.settings, space, "unreachable",
                                          "The app did not take the connection. It may be restarting.", refresh=5,
                                          status=502)
            return web.Response(status=502, text=f"502: Space {space_id} is not answering\n")
        finally:
            if streaming:
                self.registry.stream_closed(space_id)

    async def _wake(self, request, space) -> web.StreamResponse | None:
        """None once the Space is awake; otherwise the answer to send instead."""
        task = self.sleeper.wake(space["id"])
        try:
            await asyncio.wait_for(asyncio.shield(task), BROWSER_WAKE_WAIT if wants_html(request) else WAKE_TIMEOUT)
        except asyncio.TimeoutError:
            if wants_html(request):
                return pages.space_status(self.settings, space, "waking", refresh=2, status=503)
            return web.Response(status=504, text=f"504: Space {space['id']} did not wake in time\n")
        except Exception:
            message = self.sleeper.wake_errors.get(space["id"], "waking failed")
            if wants_html(request):
                return pages.space_status(self.settings, space, "failed", message, status=503)
            return web.Response(status=503, text=f"503: Space {space['id']} could not wake: {message}\n")
        return None

    def _not_serving(self, request, space) -> web.Response:
        stage = space.get("stage")
        if stage in ERROR_STAGES:
            kind, refresh = "failed", None
        elif stage in stages.SHUT:
            kind, refresh = "paused", None
        elif stage == stages.APP_STARTING:
            kind, refresh = "starting", 3
        else:
            kind, refresh = "building", 5
        if wants_html(request):
            return pages.space_status(self.settings, space, kind, refresh=refresh)
        reason = f": {space['error']}" if space.get("error") else ""
        return web.Response(status=503, text=f"503: Space {space['id']} is {stage}{reason}\n",
                            headers={"Retry-After": str(refresh)} if refresh else None)

    # -- the main domain -------------------------------------------------------------------
    async def gallery(self, request: web.Request) -> web.Response:
        who = await self._visitor(request)
        return pages.gallery(self.settings, [s for s in await self.registry.spaces()
                                             if accounts.may(who, accounts.READ, s)])

    async def _visitor(self, request: web.Request):
        try:
            return await self.door.identity(request)
        except web.HTTPUnauthorized:
            return None  # a stale cookie: shown what anyone sees

    async def space_page(self, request: web.Request) -> web.Response:
        space_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        space = await self.registry.space(space_id)
        visitor = await self._visitor(request)
        if space is not None and not accounts.may(visitor, accounts.READ, space):
            space = None
        if space is None:
            return pages.not_found(self.settings, f"There is no Space {space_id} on this server.")
        return pages.space_page(self.settings, space, await self.registry.rollout_note(space_id), visitor,
                                member=accounts.may(visitor, accounts.LOGS, space))



def _count(metrics: Metrics, request: web.Request, response, status: int, seconds: float) -> None:
    """An answer the app made (those the relay hands over included; the relay leaves them to us)."""
    if response is None:
        nbytes = 0
    elif response.prepared:  # streamed by the handler: sent already
        nbytes = response.body_length
    else:  # sent after this returns: its body is known, or its length is
        body = getattr(response, "body", None)
        nbytes = len(body) if isinstance(body, (bytes, bytearray)) else (response.content_length or 0)
    streaming = status == 101 or (response is not None and response.content_type == "text/event-stream")
    metrics.answered(request.get(SPACE_ID), status, nbytes, None if streaming else seconds)


def make_app(settings, registry: Registry | None = None, sleeper: Sleeper | None = None,
             run_sleeper: bool = True) -> web.Application:
    registry = registry or Registry(settings)
    sleeper = sleeper or Sleeper(settings, registry)
    gateway = Gateway(settings, registry, sleeper)
    metrics = sleeper.metrics = Metrics()

    @web.middleware
    async def by_host(request: web.Request, handler):
        started = asyncio.get_running_loop().time()
        status, response = 500, None
        try:
            label = space_label(settings, request.host)
            response = await (gateway.space_request(request, label) if label is not None else handler(request))
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            _count(metrics, request, response, status, asyncio.get_running_loop().time() - started)

    app = web.Application(middlewares=[by_host], client_max_size=1024 ** 3)
    app[SETTINGS], app[REGISTRY], app[SLEEPER], app[SITES] = settings, registry, sleeper, gateway.sites
    app[METRICS] = metrics
    app.router.add_get("/", gateway.gallery)
    app.router.add_get("/spaces/{owner}/{name}", gateway.space_page)
    settingspage.add_routes(app, hubrepos.add_routes(app, settings, registry, gateway.door))
    githttp.add_routes(app, settings, registry, gateway.door)
    app.router.add_static("/static/", STATIC)

    async def lifecycle(app):
        await gateway.proxy.start()
        commands = None
        # authors' SSH commands (sshcommands.py): answered by the main gateway only (an extra
        # `gateway --no-sleep` on the same state would take the socket from it)
        if settings["ssh.auth_log"] and run_sleeper:
            commands = sshcommands.listen(settings)
            threading.Thread(target=sshcommands.serve, args=(settings, commands), daemon=True,
                             name="ssh-commands").start()
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            sleeper.loop(stop, settings["gateway.sleep_check_seconds"])) if run_sleeper else None
        yield
        stop.set()
        if commands is not None:
            commands.close()
        if task:
            await task
        await gateway.proxy.close()
        gateway.sites.close()
        sleeper.close()
        await asyncio.get_running_loop().run_in_executor(None, registry.close)

    app.cleanup_ctx.append(lifecycle)
    return app
