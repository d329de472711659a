"""The Hub's HTTP API for Spaces as the unmodified huggingface_hub client calls it (HUBAPI.md):
whoami, space_info, list_spaces, the runtime and the owner's operations on a Space. Every
answer follows the owner rules (accounts.may): a Space a caller may not see is "not found",
and every change is written to the audit log. Repository creation and deletion: hubrepos.py.
"""
from __future__ import annotations

import asyncio
import datetime
import json
from urllib.parse import urlencode

from aiohttp import web

from spacehooks import stages
from spacehooks.access import accounts
from spacehooks.admin import limits, spaces as admin
from spacehooks.errors import SpaceError
from spacehooks.gateway import api, pages
from spacehooks.gateway.access import Door
from spacehooks.gateway.registry import Registry, host_label

PAGE = 100


def error(status: int, message: str, code: str | None = None, headers: dict | None = None) -> web.Response:
    extra = {"X-Error-Message": message.replace("\n", " ")[:500], **(headers or {})}
    if code:
        extra["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=extra)


def not_found(space_id: str) -> web.Response:
    # the client turns X-Error-Code RepoNotFound into RepositoryNotFoundError
    return error(404, f"Repository Not Found for url: /api/spaces/{space_id}. Make sure the Space exists and that "
                 "you have access to it.", "RepoNotFound")


def iso(stamp) -> str | None:
    if not stamp:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def space_info(settings, space: dict) -> dict:
    config = space.get("config") or {}
    v = pages.view(settings, space)
    card = {k: val for k, val in config.items() if isinstance(val, (str, int, float, bool, list, dict))}
    return {
        "id": space["id"], "_id": space["id"], "author": space["id"].partition("/")[0],
        "sha": space.get("commit"), "createdAt": iso(space.get("created_at")),
        "lastModified": iso(space.get("updated_at")), "private": bool(space.get("private")),
        "disabled": False, "gated": False, "host": pages.public_url(settings, v["host"]), "subdomain": host_label(space["id"]), "likes": 0, "sdk": config.get("sdk"),
        "tags": [t for t in config.get("tags", []) if isinstance(t, str)] if isinstance(config.get("tags"), list)
        else [], "cardData": card, "siblings": [], "runtime": api.runtime(settings, space),
    }


class HubApi:
    def __init__(self, settings, registry: Registry, door: Door):
        self.settings = settings
        self.registry = registry
        self.door = door

    @staticmethod
    def space_id(request: web.Request) -> str:
        return f"{request.match_info['owner']}/{request.match_info['name']}"

    async def whoami(self, request: web.Request) -> web.Response:
        who = await self.door.identity(request)
        if who is None:
            return error(401, "Invalid credentials in Authorization header")
        token = await self.registry.call("token", who.credential.partition(":")[2]) \
            if who.credential.startswith("token:") else None
        return web.json_response({
            "type": "user", "id": who.name, "name": who.name, "fullname": who.name, "isPro": False,
            "canPay": False, "emailVerified": True, "periodEnd": None, "avatarUrl": "",
            "orgs": [{"type": "org", "name": o, "id": o, "fullname": o} for o in sorted(who.orgs)],
            "auth": {"type": "access_token", "accessToken": {
                "displayName": (token or {}).get("name") or (token or {}).get("id", ""),
                "role": who.scope, "createdAt": iso((token or {}).get("created_at"))}},
        })

    async def info(self, request: web.Request) -> web.Response:
        space = await self.door.space_for(request, self.space_id(request))
        if space is None:
            return not_found(self.space_id(request))
        return web.json_response(space_info(self.settings, space), headers={"Cache-Control": "no-store"})

    async def runtime(self, request: web.Request) -> web.Response:
        space = await self.door.space_for(request, self.space_id(request))
        if space is None:
            return not_found(self.space_id(request))
        return web.json_response(api.runtime(self.settings, space), headers={"Cache-Control": "no-store"})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        # run logs are for members of any Space; build logs of a public Space stay public
        action = accounts.LOGS if request.match_info["kind"] == "run" else accounts.READ
        if await self.door.space_for(request, self.space_id(request), action) is None:
            return not_found(self.space_id(request))
        return await api.logs_handler(request)

    async def list(self, request: web.Request) -> web.Response:
        who = await self.door.identity(request)
        query = request.query
        author, search = query.get("author"), (query.get("search") or "").lower()
        try:
            limit = int(query["limit"]) if query.get("limit") else None
            cursor = max(0, int(query.get("cursor") or 0))
        except ValueError:
            return error(400, "limit and cursor must be whole numbers")
        rows = [s for s in await self.registry.spaces()
                if accounts.may(who, accounts.READ, s) and (not author or s["id"].partition("/")[0] == author)
                and (not search or search in s["id"].lower())]
        size = min(limit, 1000) if limit else PAGE
        page = rows[cursor:cursor + size]
        headers = {"Cache-Control": "no-store"}
        if cursor + size < len(rows) and not (limit and cursor + size >= limit):
            params = {k: v for k, v in query.items() if k != "cursor"}
            params["cursor"] = str(cursor + size)
            headers["Link"] = f'<{request.url.with_query(None)}?{urlencode(params)}>; rel="next"'
        return web.json_response([space_info(self.settings, s) for s in page], headers=headers)

    # -- the owner's operations -----------------------------------------------------------
    async def _writable(self, request: web.Request):
        """(space, identity) or the error answer: 404 to who may not see it, 401 anonymous,
        403 to who sees it but may not change it (not a member, or a read token)."""
        space_id = self.space_id(request)
        space = await self.door.space_for(request, space_id)
        if space is None:
            return None, not_found(space_id)
        who = await self.door.identity(request)
        if who is None:
            return None, error(401, "You must be signed in (a write token) to change a Space")
        if not accounts.may(who, accounts.WRITE, space):
            why = "a read token cannot change a Space" if who.scope != "write" else \
                f"{who.name} may not change {space_id}: it belongs to {space_id.partition('/')[0]}"
            return None, error(403, why)
        return space, who

    async def _do(self, request: web.Request, action: str, work, detail: str = "", answer="runtime"):
        space, who = await self._writable(request)
        if space is None:
            return who
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, work, space, who)
        except SpaceError as exc:
            await self.registry.run(accounts.audit, who, action, space["id"], f"{detail} failed: {exc.message}".strip())
            return error(400, exc.message)
        await self.registry.run(accounts.audit, who, action, space["id"], detail)
        fresh = await self.registry.space(space["id"], fresh=True) or space  # the answer and later reads see it
        if answer == "runtime":
            return web.json_response(api.runtime(self.settings, fresh))
        return web.json_response(result if answer == "result" and isinstance(result, dict) else {})

    async def _body(self, request: web.Request) -> dict:
        try:
            body = await request.json() if request.can_read_body else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text='{"error": "the body is not JSON"}', content_type="application/json")
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}', content_type="application/json")
        return body

    async def restart(self, request: web.Request) -> web.Response:
        settings = self.settings
        factory = request.query.get("factory", "").lower() in ("true", "1")

        def work(space, who):
            if factory:  # a rebuild without cache, as the Hub's factory reboot
                return admin.rebuild(settings, space["id"], True)
            elif space.get("stage") in stages.HALTED:
                return admin.resume(settings, space["id"])
            else:
                return admin.restart(settings, space["id"])
        return await self._do(request, "factory-reboot" if factory else "restart", work)

    async def pause(self, request: web.Request) -> web.Response:
        return await self._do(request, "pause", lambda space, who: admin.pause(self.settings, space["id"]))

    async def sleeptime(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        seconds = body.get("seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or (seconds < 0 and seconds != -1):
            return error(400, "seconds must be a whole number of seconds, or -1 (never sleep)")
        from spacehooks.gateway import sleeper
        return await self._do(request, "sleep-time", lambda space, who: sleeper.set_sleep_time(
            self.settings, space["id"], seconds), str(seconds))

    def allowed_flavor(self, who, flavor) -> str | None:
        """Why `who` may not pick `flavor`, or None."""
        if not isinstance(flavor, str) or flavor not in self.settings.flavors:
            return f"unknown hardware {flavor!r}; this server has: {', '.join(sorted(self.settings.flavors))}"
        if not who.admin and flavor not in self.settings["api.hardware_flavors"]:
            return (f"hardware {flavor} is granted by the admin; you may pick: "
                    f"{', '.join(self.settings['api.hardware_flavors']) or 'none'}")
        return None

    async def hardware(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        flavor = body.get("flavor")
        space, who = await self._writable(request)
        if space is None:
            return who
        refused = self.allowed_flavor(who, flavor)
        if refused:
            await self.registry.run(accounts.audit, who, "hardware", space["id"], f"{flavor} refused")
            return error(403 if "granted" in refused else 400, refused)
        sleep = body.get("sleepTimeSeconds")

        def work(space, who):
            limits.set_hardware(self.settings, space["id"], flavor)
            if isinstance(sleep, int) and not isinstance(sleep, bool):
                from spacehooks.gateway import sleeper
                sleeper.set_sleep_time(self.settings, space["id"], sleep)
        return await self._do(request, "hardware", work, flavor)

    # -- secrets (names only ever leave) and variables ------------------------------------
    async def secrets(self, request: web.Request) -> web.Response:
        settings = self.settings
        if request.method == "GET":
            space = await self.door.space_for(request, self.space_id(request), accounts.LOGS)
            if space is None:
                return not_found(self.space_id(request))
            keys = admin.secret_list(settings, space["id"])
            return web.json_response({k: {"key": k, "description": None, "updatedAt": None} for k in keys})
        parsed = self._key_value(await self._body(request), request.method)
        if isinstance(parsed, web.Response):
            return parsed
        key, value = parsed
        if request.method == "POST":
            return await self._do(request, "secret-set", lambda space, who: admin.secret_set(
                settings, space["id"], key, value), key, answer="empty")
        return await self._do(request, "secret-delete", lambda space, who: admin.secret_delete(
            settings, space["id"], key), key, answer="empty")

    @staticmethod
    def _key_value(body: dict, method: str):
        """(key, value) of a secret or variable write (value None for a delete), or the 400 answer."""
        key = body.get("key")
        if not isinstance(key, str):
            return error(400, "key is required")
        value = body.get("value", "") if method == "POST" else None
        if method == "POST" and not isinstance(value, str):
            return error(400, "value must be a string")
        return key, value

    async def variables(self, request: web.Request) -> web.Response:
        settings = self.settings

        def listing(space_id):
            return {k: {"value": v, "description": None, "updatedAt": None}
                    for k, v in admin.variable_list(settings, space_id).items()}
        if request.method == "GET":
            space = await self.door.space_for(request, self.space_id(request), accounts.LOGS)
            return not_found(self.space_id(request)) if space is None else web.json_response(listing(space["id"]))
        parsed = self._key_value(await self._body(request), request.method)
        if isinstance(parsed, web.Response):
            return parsed
        key, value = parsed
        if request.method == "POST":
            def put(space, who):
                admin.variable_set(settings, space["id"], key, value)
                return listing(space["id"])
            return await self._do(request, "variable-set", put, key, answer="result")

        def drop(space, who):
            admin.variable_delete(settings, space["id"], key)
            return listing(space["id"])
        return await self._do(request, "variable-delete", drop, key, answer="result")

