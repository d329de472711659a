"""Uploads without git, as the Hub's client sends them (HUBAPI.md): validate-yaml, preupload
and the ndjson commit. The commit goes through the Space's gate like a push (uploads.py):
a refusal comes back as the error the client shows. Write token and owner rules required;
paths are checked as tree names where they enter; body size and file count are capped."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json

from aiohttp import web

from spacehooks import accounts, uploads
from spacehooks.errors import SpaceError
from spacehooks.gateway.access import client_address
from spacehooks.gateway.hubapi import HubApi, error


class HubUpload:
    def __init__(self, hub: HubApi):
        self.hub = hub
        self.settings = hub.settings
        self.registry = hub.registry

    async def validate_yaml(self, request: web.Request) -> web.Response:
        # the gate checks the README's YAML when the commit arrives; here only the body's shape
        body = await self.hub._body(request)
        if not isinstance(body.get("content", ""), str):
            return error(400, "content must be a string")
        return web.json_response({})

    def _branch(self, request: web.Request) -> str | None:
        rev = request.match_info["rev"]
        return rev if rev == self.settings["deploy_branch"] else None

    def _wrong_branch(self, request: web.Request) -> web.Response:
        return error(400, f"uploads go to the deploy branch {self.settings['deploy_branch']}, "
                     f"not {request.match_info['rev'][:100]!r}")

    async def preupload(self, request: web.Request) -> web.Response:
        space, who = await self.hub._writable(request)
        if space is None:
            return who
        if self._branch(request) is None:
            return self._wrong_branch(request)
        body = await self.hub._body(request)
        files = body.get("files")
        if not isinstance(files, list) or len(files) > self.settings["api.upload_max_files"]:
            return error(400, f"files must be a list of at most {self.settings['api.upload_max_files']}")
        answer = []
        for item in files:
            try:
                path = uploads.check_path(item.get("path") if isinstance(item, dict) else None)
            except SpaceError as exc:
                return error(400, exc.message)
            # git holds every file itself (git LFS: push with git)
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False})
        return web.json_response({"files": answer, "commitOid": space.get("commit")})

    async def _read_body(self, request: web.Request) -> bytes:
        cap = self.settings["api.upload_max_bytes"]
        if request.content_length is not None and request.content_length > cap:
            raise SpaceError(f"the upload is larger than {cap} bytes (setting api.upload_max_bytes)")
        chunks, size = [], 0
        while True:
            chunk = await request.content.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > cap:
                raise SpaceError(f"the upload is larger than {cap} bytes (setting api.upload_max_bytes)")
            chunks.append(chunk)

    def parse(self, raw: bytes) -> uploads.Change:
        change = uploads.Change()
        header = False
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if not isinstance(value, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise SpaceError(f"line {number} of the commit is not a {{key, value}} object") from None
            if key == "header":
                header = True
                change.summary = str(value.get("summary") or "")[:1000]
                change.description = str(value.get("description") or "")[:100_000]
                parent = value.get("parentCommit")
                if parent is not None and not (isinstance(parent, str) and len(parent) == 40
                                               and all(c in "0123456789abcdef" for c in parent)):
                    raise SpaceError("parentCommit must be a commit id (40 hex digits)")
                change.parent = parent
            elif key == "file":
                path = uploads.check_path(value.get("path"))
                if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                    raise SpaceError(f"{path}: content must be base64")
                try:
                    change.files[path] = base64.b64decode(value["content"], validate=True)
                except (binascii.Error, ValueError):
                    raise SpaceError(f"{path}: content is not valid base64") from None
            elif key == "deletedFile":
                change.deleted_files.append(uploads.check_path(value.get("path")))
            elif key == "deletedFolder":
                change.deleted_folders.append(uploads.check_path(value.get("path"), folder=True))
            elif key in ("lfsFile", "copyFile"):
                raise SpaceError(f"{key} operations are not served here: upload the files themselves")
            else:
                raise SpaceError(f"line {number}: unknown operation {str(key)[:50]!r}")
        if not header:
            raise SpaceError("the commit has no header line")
        count = len(change.files) + len(change.deleted_files) + len(change.deleted_folders)
        if count == 0:
            raise SpaceError("the commit changes nothing")
        if count > self.settings["api.upload_max_files"]:
            raise SpaceError(f"the commit has {count} operations; at most {self.settings['api.upload_max_files']}"
                             " (setting api.upload_max_files)")
        return change

    async def commit(self, request: web.Request) -> web.Response:
        space, who = await self.hub._writable(request)
        if space is None:
            return who
        if self._branch(request) is None:
            return self._wrong_branch(request)
        if request.query.get("create_pr", "").lower() in ("1", "true"):
            return error(400, "pull requests are not served here: commit to the deploy branch")
        try:
            change = self.parse(await self._read_body(request))
        except SpaceError as exc:
            return error(413 if "larger than" in exc.message else 400, exc.message)
        settings, space_id = self.settings, space["id"]
        try:
            oid = await asyncio.get_running_loop().run_in_executor(
                None, uploads.commit, settings, space["repo_path"], settings["deploy_branch"], change, who.name)
        except SpaceError as exc:
            status = 412 if isinstance(exc, uploads.Stale) else 404 if isinstance(exc, uploads.Missing) \
                else 422 if isinstance(exc, uploads.Declined) else 400
            await self.registry.run(accounts.audit, who, "upload", space_id, f"refused: {exc.message[:200]}")
            headers = None
            if isinstance(exc, uploads.Declined):  # the header holds the problems, the body all the gate said
                problems = [l.strip(" !") for l in exc.message.splitlines() if l.startswith(" !")]
                headers = {"X-Error-Message": "; ".join(problems[1:] or problems)[:500] or "refused by the Space's gate"}
            return error(status, exc.message, "EntryNotFound" if status == 404 else None, headers)
        detail = f"{oid[:12]} +{len(change.files)} -{len(change.deleted_files) + len(change.deleted_folders)}"
        await self.registry.run(accounts.audit, who, "upload", space_id, detail)
        await self.registry.space(space_id, fresh=True)
        # the client checks the URL against the endpoint it called: the address it used
        proto = request.headers.get("X-Forwarded-Proto", request.scheme) if client_address(request) != request.remote \
            else request.scheme
        return web.json_response({"commitUrl": f"{proto}://{request.host}/spaces/{space_id}/commit/{oid}",
                                  "commitOid": oid,
                                  "success": True})


def add_routes(app: web.Application, hub: HubApi) -> None:
    upload = HubUpload(hub)
    app.router.add_post("/api/validate-yaml", upload.validate_yaml)
    app.router.add_post("/api/spaces/{owner}/{name}/preupload/{rev}", upload.preupload)
    app.router.add_post("/api/spaces/{owner}/{name}/commit/{rev}", upload.commit)
