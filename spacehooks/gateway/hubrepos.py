"""create_repo, delete_repo and update_repo_settings for Spaces, as the Hub's client calls
them: the caller must be a member (write token) of the namespace; each is audited."""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from aiohttp import web

from spacehooks.access import accounts
from spacehooks.admin import install, people, spaces as admin
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.gateway.access import client_address
from spacehooks.gateway import hubcopy, hubupload
from spacehooks.gateway.hubapi import HubApi, error, not_found

SDKS = ("gradio", "streamlit", "docker", "static")


def remove(settings, space: dict) -> None:
    """Delete a Space (the API's delete_repo and the settings page)."""
    admin.delete(settings, space["id"])
    # the repository is kept where the git account cannot reach it: nothing pushed is lost
    repo = Path(space["repo_path"])
    if repo.exists():
        trash = Path(settings.home) / "deleted" / f"{space['id'].replace('/', '--')}.{int(time.time())}.git"
        trash.parent.mkdir(mode=0o700, exist_ok=True)
        shutil.move(str(repo), str(trash))


class HubRepos:
    def __init__(self, hub: HubApi):
        self.hub = hub
        self.settings = hub.settings
        self.registry = hub.registry
        self.door = hub.door

    async def _target(self, request: web.Request):
        """(space id, identity, body) of a create/delete request, or (None, answer, None)."""
        body = await self.hub._body(request)
        if body.get("type", "model") != "space":
            return None, error(400, "only Spaces are served here (repo_type='space')"), None
        who = await self.door.identity(request)
        if who is None:
            return None, error(401, "You must be signed in (a write token) to create or delete a Space"), None
        name, org = body.get("name"), body.get("organization")
        if isinstance(name, str) and "/" in name and org is None:
            org, _, name = name.partition("/")
        try:
            space_id = accounts.check_space_id(f"{org or who.name}/{name}")
        except SpaceError as exc:
            return None, error(400, exc.message), None
        return space_id, who, body

    async def create(self, request: web.Request) -> web.Response:
        space_id, who, body = await self._target(request)
        if space_id is None:
            return who
        if not accounts.may(who, accounts.WRITE, space_id):
            return error(403, f"{who.name} may not create Spaces under {space_id.partition('/')[0]}"
                         if who.scope == "write" else "a read token cannot create a Space")
        sdk = body.get("sdk")
        if sdk not in SDKS:
            return error(400, f"sdk must be one of {', '.join(SDKS)} (space_sdk=)")
        private = body.get("private") is True or body.get("visibility") == "private"
        hardware = body.get("hardware")
        if hardware is not None:
            refused = self.hub.allowed_flavor(who, hardware)
            if refused:
                return error(403 if "granted" in refused else 400, refused)
        # the client checks the answer against the endpoint it called: the address it used
        proto = request.headers.get("X-Forwarded-Proto", request.scheme) if client_address(request) != request.remote \
            else request.scheme
        url = f"{proto}://{request.host}/spaces/{space_id}"
        if await self.registry.space(space_id, fresh=True) is not None or \
                (Path(self.settings["repo_root"]) / f"{space_id}.git").exists():
            message = "You already created this space repo"
            return web.json_response({"error": message, "url": url}, status=409, headers={"X-Error-Message": message})
        settings = self.settings
        try:  # checked before anything is made: a refused create leaves no half-made Space
            secrets, variables = hubcopy._pairs(body.get("secrets")), hubcopy._pairs(body.get("variables"))
        except SpaceError as exc:
            return error(400, exc.message)

        def work():
            repo = install.create_repo(settings, space_id, echo=lambda line: None)
            people.register(settings, space_id, repo, private, sdk)
            for key, value in secrets.items():
                admin.secret_set(settings, space_id, key, value)
            for key, value in variables.items():
                admin.variable_set(settings, space_id, key, value)
            if hardware:
                from spacehooks.run import gpu
                gpu.assign_flavor(settings, space_id, hardware)
        try:
            await asyncio.get_running_loop().run_in_executor(None, work)
        except SpaceError as exc:
            return error(400, exc.message)
        await self.registry.run(accounts.audit, who, "create", space_id, f"sdk={sdk} private={private}")
        await self.registry.space(space_id, fresh=True)
        return web.json_response({"url": url, "name": space_id, "id": space_id})

    async def delete(self, request: web.Request) -> web.Response:
        space_id, who, body = await self._target(request)
        if space_id is None:
            return who
        space = await self.door.space_for(request, space_id)
        if space is None:
            return not_found(space_id)
        if not accounts.may(who, accounts.WRITE, space):
            return error(403, f"{who.name} may not delete {space_id}" if who.scope == "write"
                         else "a read token cannot delete a Space")
        try:
            await asyncio.get_running_loop().run_in_executor(None, remove, self.settings, space)
        except SpaceError as exc:
            return error(503 if "Podman" in exc.message else 400, exc.message)
        await self.registry.run(accounts.audit, who, "delete", space_id)
        await self.registry.space(space_id, fresh=True)
        return web.json_response({})

    async def update_settings(self, request: web.Request) -> web.Response:
        body = await self.hub._body(request)
        private = body.get("private")
        if "visibility" in body:
            private = body["visibility"] == "private"
        if not isinstance(private, bool):
            return error(400, "only the visibility (private or public) can be changed here")
        settings = self.settings

        def work(space, who):
            st = state_mod.open(settings)
            try:
                st.set_private(space["id"], private)
                accounts.write_access_file(settings, st)
            finally:
                st.close()
        return await self.hub._do(request, "visibility", work, "private" if private else "public", answer="result")


def add_routes(app: web.Application, settings, registry, door) -> HubApi:
    """The Hub API's routes and the sign-in pages, on the gallery host."""
    hub = HubApi(settings, registry, door)
    repos = HubRepos(hub)
    space = "/api/spaces/{owner}/{name}"
    app.router.add_get("/api/whoami-v2", hub.whoami)
    app.router.add_get("/api/spaces", hub.list)
    app.router.add_get(space, hub.info)
    app.router.add_get(space + "/revision/{revision}", hub.info)
    app.router.add_get(space + "/runtime", hub.runtime)
    app.router.add_get(space + "/logs/{kind:build|run}", hub.logs)
    app.router.add_post(space + "/restart", hub.restart)
    app.router.add_post(space + "/pause", hub.pause)
    app.router.add_post(space + "/sleeptime", hub.sleeptime)
    app.router.add_post(space + "/hardware", hub.hardware)
    for method in ("GET", "POST", "DELETE"):
        app.router.add_route(method, space + "/secrets", hub.secrets)
        app.router.add_route(method, space + "/variables", hub.variables)
    app.router.add_put(space + "/settings", repos.update_settings)
    hubcopy.add_routes(app, hub)  # storage and duplicate
    app.router.add_post("/api/repos/create", repos.create)
    app.router.add_delete("/api/repos/delete", repos.delete)
    hubupload.add_routes(app, hub)
    app.router.add_get("/signin", door.signin_page)
    app.router.add_post("/signin", door.signin)
    app.router.add_post("/signout", door.signout)
    return hub
