"""request_space_storage, delete_space_storage and duplicate_space as the Hub's client calls
them: `POST`/`DELETE /api/spaces/{id}/storage` `{"tier"}` and `POST /api/spaces/{id}/duplicate`
`{"repository", "private" or "visibility", "hardware", "storageTier", "secrets", "variables"}`.
Storage follows the owner rules of every change (hubapi's _do: members with a write token);
a duplicate needs sight of the original and a write token for the copy's namespace. Each is
written to the audit log."""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from spacehooks.access import accounts
from spacehooks.admin import duplicate, storage as storage_admin
from spacehooks.errors import SpaceError
from spacehooks.gateway.access import client_address
from spacehooks.gateway.hubapi import HubApi, error, not_found


class HubCopy:
    def __init__(self, hub: HubApi):
        self.hub = hub
        self.settings = hub.settings
        self.registry = hub.registry
        self.door = hub.door

    async def storage(self, request: web.Request) -> web.Response:
        settings, adding = self.settings, request.method == "POST"
        body = await self.hub._body(request) if adding else {}
        tier = body.get("tier")

        def work(space, who):
            if not adding:
                return storage_admin.remove(settings, space["id"])
            if not isinstance(tier, str):
                raise SpaceError('give the storage tier as {"tier": "small"}')
            return storage_admin.set_tier(settings, space["id"], tier)
        # the answer is the SpaceRuntime, read afresh: `storage` is the tier the Space has now
        return await self.hub._do(request, "storage" if adding else "storage-delete", work, str(tier) if adding else "")

    async def duplicate(self, request: web.Request) -> web.Response:
        from_id = self.hub.space_id(request)
        source = await self.door.space_for(request, from_id)
        if source is None:
            return not_found(from_id)
        who = await self.door.identity(request)
        if who is None:
            return error(401, "You must be signed in (a write token) to duplicate a Space")
        body = await self.hub._body(request)
        try:
            to_id = accounts.check_space_id(body.get("repository") if isinstance(body.get("repository"), str) else "")
            secrets, variables = _pairs(body.get("secrets")), _pairs(body.get("variables"))
        except SpaceError as exc:
            return error(400, exc.message)
        if not accounts.may(who, accounts.WRITE, to_id):
            return error(403, f"{who.name} may not create Spaces under {to_id.partition('/')[0]}"
                         if who.scope == "write" else "a read token cannot create a Space")
        hardware = body.get("hardware")
        if hardware is not None:
            refused = self.hub.allowed_flavor(who, hardware)
            if refused:
                return error(403 if "granted" in refused else 400, refused)
        # the Hub's rule: the copy is as private as the original unless the caller says otherwise
        private = bool(source.get("private"))
        if isinstance(body.get("private"), bool):
            private = body["private"]
        elif "visibility" in body:
            private = body["visibility"] == "private"
        # the client checks the answer against the endpoint it called: the address it used
        proto = request.headers.get("X-Forwarded-Proto", request.scheme) if client_address(request) != request.remote \
            else request.scheme
        url = f"{proto}://{request.host}/spaces/{to_id}"
        if await self.registry.space(to_id, fresh=True) is not None or \
                (Path(self.settings["repo_root"]) / f"{to_id}.git").exists():
            message = "You already created this space repo"
            return web.json_response({"error": message, "url": url}, status=409, headers={"X-Error-Message": message})
        tier = body.get("storageTier", body.get("storage"))
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, lambda: duplicate.duplicate(
                self.settings, from_id, to_id, private=private, hardware=hardware,
                storage_tier=tier if isinstance(tier, str) else None, secrets=secrets, variables=variables))
        except SpaceError as exc:
            await self.registry.run(accounts.audit, who, "duplicate", to_id, f"from={from_id} failed: {exc.message}")
            return error(400, exc.message)
        await self.registry.run(accounts.audit, who, "duplicate", to_id,
                                f"from={from_id} private={private} commit={result.commit[:12]}")
        await self.registry.space(to_id, fresh=True)
        return web.json_response({"url": url, "name": to_id, "id": to_id,
                                  "secretsToSet": result.secrets_to_set})


def _pairs(items) -> dict:
    """The client's [{"key", "value", "description"?}, ...] as {key: value}."""
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("key"), str)
                                              and isinstance(i.get("value"), str) for i in items):
        raise SpaceError("secrets and variables are [{key, value}]")
    return {i["key"]: i["value"] for i in items}


def add_routes(app: web.Application, hub: HubApi) -> None:
    copy = HubCopy(hub)
    space = "/api/spaces/{owner}/{name}"
    app.router.add_post(space + "/storage", copy.storage)
    app.router.add_delete(space + "/storage", copy.storage)
    app.router.add_post(space + "/duplicate", copy.duplicate)
