"""The Space's settings page for its members, as on the Hub: secrets (write-only), variables,
hardware among the allowed flavors, sleep time, restart, factory rebuild, pause and resume,
visibility, and delete with the Space's name typed to confirm.

Every change is a form POST that the same owner rules and audit log as the API decide
(HubApi._do). Cross-site requests are refused three ways: the sign-in cookie is SameSite=Lax
(a cross-site POST carries none), a POST whose Origin is not the gallery's is refused, and
each form carries a token (an HMAC of the caller's credential under a key this process made)
that another site cannot read or compute.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from urllib.parse import quote

from aiohttp import web

from spacehooks import accounts, admin, limits, stages
from spacehooks import state as state_mod
from spacehooks.gateway import api, pages
from spacehooks.gateway.access import credential
from spacehooks.gateway.hubapi import HubApi
from spacehooks.gateway.hubrepos import remove

ACTIONS = ("secret-set", "secret-delete", "variable-set", "variable-delete", "hardware", "sleep-time", "restart",
           "factory-reboot", "pause", "resume", "visibility", "delete")


class SettingsPage:
    def __init__(self, hub: HubApi):
        self.hub = hub
        self.settings = hub.settings
        self.door = hub.door
        self.key = secrets.token_bytes(32)

    def csrf(self, request: web.Request) -> str:
        return hmac.new(self.key, (credential(request) or "").encode(), hashlib.sha256).hexdigest()

    def same_site(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        gallery = pages.public_url(self.settings, self.settings["gateway.domain"])
        return origin is None or origin == gallery

    async def _member(self, request: web.Request):
        """(space, identity) for a member, or (None, the 404 every other visitor gets)."""
        space_id = self.hub.space_id(request)
        try:
            space = await self.door.space_for(request, space_id, accounts.LOGS)
        except web.HTTPUnauthorized:
            space = None
        if space is None:
            return None, pages.not_found(self.settings, f"There is no Space {space_id} on this server.")
        return space, await self.door.identity(request)

    async def show(self, request: web.Request, message: str = "", failed: bool = False,
                   status: int = 200) -> web.Response:
        space, who = await self._member(request)
        if space is None:
            return who
        settings, space_id = self.settings, space["id"]
        flavors = sorted(settings.flavors) if who.admin else list(settings["api.hardware_flavors"])
        runtime, loop = api.runtime(settings, space), asyncio.get_running_loop()
        return pages.render(
            "settings.html", status=status, page_title=f"Settings - {space_id}", home_url="/",
            space=pages.view(settings, space), private=bool(space.get("private")), runtime=runtime,
            secrets=await loop.run_in_executor(None, admin.secret_list, settings, space_id),
            variables=await loop.run_in_executor(None, admin.variable_list, settings, space_id), flavors=flavors,
            may_write=accounts.may(who, accounts.WRITE, space), who=who.name, csrf=self.csrf(request),
            resumable=(stages.PAUSED, stages.STOPPED),
            message=message or _done(request), failed=failed,
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                     "Content-Security-Policy": "frame-ancestors 'none'"})

    async def change(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ACTIONS:
            return web.Response(status=404, text="404: no such setting\n")
        form = await request.post()
        if not self.same_site(request) or not hmac.compare_digest(str(form.get("csrf", "")), self.csrf(request)):
            return web.Response(status=403, text="403: this form was not sent from this Space's settings page\n")
        space, who = await self._member(request)
        if space is None:
            return who
        work, detail = self._work(action, form, space, who)
        if isinstance(work, str):
            return await self.show(request, work, failed=True, status=400)
        answer = await self.hub._do(request, action, work, detail, answer="empty")
        if answer.status != 200:
            return await self.show(request, json.loads(answer.body).get("error", "refused"), failed=True,
                                   status=answer.status)
        if action == "delete":
            return web.HTTPSeeOther("/")
        return web.HTTPSeeOther(f"/spaces/{space['id']}/settings?done={quote(action)}")

    def _work(self, action: str, form, space: dict, who):
        """(the work for HubApi._do, audit detail), or (why not, None)."""
        settings, space_id = self.settings, space["id"]
        key, value = str(form.get("key", "")).strip(), str(form.get("value", ""))
        if action == "secret-set":
            return (lambda s, w: admin.secret_set(settings, space_id, key, value)), key
        if action == "secret-delete":
            return (lambda s, w: admin.secret_delete(settings, space_id, key)), key
        if action == "variable-set":
            return (lambda s, w: admin.variable_set(settings, space_id, key, value)), key
        if action == "variable-delete":
            return (lambda s, w: admin.variable_delete(settings, space_id, key)), key
        if action == "hardware":
            flavor = str(form.get("flavor", ""))
            refused = self.hub.allowed_flavor(who, flavor)
            return (refused, None) if refused else ((lambda s, w: limits.set_hardware(settings, space_id, flavor)), flavor)
        if action == "sleep-time":
            try:
                seconds = int(str(form.get("seconds", "")))
            except ValueError:
                return "the sleep time is a whole number of seconds, or -1 (never sleep)", None
            from spacehooks.gateway import sleeper
            return (lambda s, w: sleeper.set_sleep_time(settings, space_id, seconds)), str(seconds)
        if action == "restart":
            return (lambda s, w: admin.restart(settings, space_id)), ""
        if action == "factory-reboot":
            return (lambda s, w: admin.rebuild(settings, space_id, True)), ""
        if action == "pause":
            return (lambda s, w: admin.pause(settings, space_id)), ""
        if action == "resume":
            return (lambda s, w: admin.resume(settings, space_id)), ""
        if action == "visibility":
            private = form.get("visibility") == "private"

            def flip(s, w):
                st = state_mod.open(settings)
                try:
                    st.set_private(space_id, private)
                    accounts.write_access_file(settings, st)
                finally:
                    st.close()
            return flip, "private" if private else "public"
        # delete: the Space's full name typed, as on the Hub
        if str(form.get("confirm", "")).strip() != space_id:
            return f"type {space_id} to confirm that it is deleted", None
        return (lambda s, w: remove(settings, space)), ""


def _done(request: web.Request) -> str:
    done = request.query.get("done", "")
    return f"Done: {done}." if done in ACTIONS else ""


def add_routes(app: web.Application, hub: HubApi) -> None:
    page = SettingsPage(hub)
    app.router.add_get("/spaces/{owner}/{name}/settings", page.show)
    app.router.add_post("/spaces/{owner}/{name}/settings/{action}", page.change)
