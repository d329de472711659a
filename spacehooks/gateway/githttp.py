"""Git over HTTPS on the gallery host, as the Hub serves it: `/spaces/OWNER/NAME(.git)` for
clone and push through git's own `git http-backend` (a CGI run as the repository's owner
account, never the gateway's), and the Git LFS endpoint below it (gitlfs.py).

HTTP Basic with a token as the password (any user name), or a bearer token. Clone: who may
read the Space (anonymous only for a public Space, and only when `git_http.anonymous_clone`);
push: a member with a write token. A push runs the Space's hooks with the token's user as
the pusher, exactly as over SSH. Smart HTTP only: nothing of the repository is served as files.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import pwd
from pathlib import Path

from aiohttp import web

from spacehooks import proc
from spacehooks.access import accounts
from spacehooks.push import uploads
from spacehooks.gateway import gitlfs
from spacehooks.gateway.access import Door, client_address
from spacehooks.gateway.registry import Registry

log = logging.getLogger("spacehooks.gateway")
SERVICES = {"git-upload-pack": accounts.READ, "git-receive-pack": accounts.WRITE}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="spacehooks", charset="UTF-8"'}
HOP = {"connection", "transfer-encoding", "keep-alive", "content-length", "status"}


def text(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=message.rstrip("\n") + "\n", headers=headers)


def token_of(request: web.Request) -> str | None:
    """The password of Basic (git's credential helpers send that), or a bearer token."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            return base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")[2] or None
        except (binascii.Error, UnicodeDecodeError):
            return "not a token"
    return accounts.bearer(header)


class GitHttp:
    def __init__(self, settings, registry: Registry, door: Door):
        self.settings = settings
        self.registry = registry
        self.door = door

    async def caller(self, request: web.Request):
        """(identity or None, None) or (None, the refusal): a wrong token is refused, and
        failures count against the address like the API's."""
        token = token_of(request)
        if not token:
            return None, None
        address = client_address(request)
        wait = self.door.limiter.retry_after(address)
        if wait:
            return None, text(429, "Too many failed token attempts; try again later", {"Retry-After": str(wait)})
        who = await self.registry.run(accounts.identify, token)
        if who is None:
            self.door.limiter.failed(address)
            return None, text(401, "Invalid credentials: use a spacehooks token as the password", CHALLENGE)
        return who, None

    async def admit(self, request: web.Request, action: str):
        """(space, identity) or (None, the refusal) for `action` on the Space the path names.
        A Space an anonymous caller may not read asks for credentials (whether it exists is
        not said); one a signed-in caller may not read is not found."""
        owner, name = request.match_info["owner"], request.match_info["repo"].removesuffix(".git")
        space_id = f"{owner}/{name}"
        who, refusal = await self.caller(request)
        if refusal is not None:
            return None, refusal
        space = await self.registry.space(space_id)
        if who is None:
            if action == accounts.WRITE or space is None or space.get("private") or not space.get("repo_path") \
                    or not self.settings["git_http.anonymous_clone"]:
                return None, text(401, f"Authentication required for {space_id}: a token as the password",
                                  CHALLENGE)
            return space, None
        if space is None or not accounts.may(who, accounts.READ, space) or not space.get("repo_path"):
            return None, text(404, f"Repository {space_id} not found")
        if not accounts.may(who, action, space):
            why = "a read token cannot push" if who.scope != "write" else \
                f"{who.name} may not push to {space_id}: it belongs to {owner}"
            return None, text(403, why)
        return space, who

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        rest = request.match_info["rest"]
        if rest.startswith("info/lfs/"):
            return await gitlfs.serve_lfs(self, request, rest[len("info/lfs/"):])
        if rest == "info/refs" and request.method == "GET":
            service = request.query.get("service", "")
        elif rest in SERVICES and request.method == "POST":
            service = rest
        else:
            return text(404, "Not found: only git's smart HTTP protocol is served here")
        if service not in SERVICES:
            return text(403, "Only git's smart HTTP protocol is served here (git 1.6.6 or later)")
        space, who = await self.admit(request, SERVICES[service])
        if space is None:
            return who
        if rest == "git-receive-pack":  # the push itself (its hooks may still refuse it)
            await self.registry.run(accounts.audit, who, "git-http-push", space["id"])
        return await self.cgi(request, Path(space["repo_path"]), rest, who)

    async def cgi(self, request: web.Request, repo: Path, rest: str, who) -> web.StreamResponse:
        try:
            uid = os.stat(repo / "objects").st_uid
        except OSError:
            return text(404, "The Space's repository is missing; ask the admin")
        try:
            home = pwd.getpwuid(uid).pw_dir
        except KeyError:
            home = "/nonexistent"
        env = uploads.hook_env(home, None)
        env.update({"GIT_PROJECT_ROOT": str(repo.parent), "PATH_INFO": f"/{repo.name}/{rest}",
                    "REQUEST_METHOD": request.method, "QUERY_STRING": request.query_string,
                    "CONTENT_TYPE": request.headers.get("Content-Type", ""), "GIT_HTTP_EXPORT_ALL": "1",
                    "REMOTE_ADDR": client_address(request), "GIT_TERMINAL_PROMPT": "0"})
        for header, name in (("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "GIT_PROTOCOL"),
                             ("Content-Length", "CONTENT_LENGTH")):
            if header in request.headers:
                env[name] = request.headers[header]
        if who is not None:  # http-backend takes pushes only with REMOTE_USER; the hooks name the pusher
            env["REMOTE_USER"] = env["SPACEHOOKS_PUSHER"] = who.name
        child = await proc.start(["git", "http-backend"], env=env, user=uid)
        errors = bytearray()

        async def feed():
            try:
                async for chunk in request.content.iter_chunked(1 << 16):
                    child.stdin.write(chunk)
                    await child.stdin.drain()
            except (ConnectionError, BrokenPipeError):
                pass
            finally:
                child.stdin.close()

        async def drain_errors():
            while chunk := await child.stderr.read(1 << 16):
                errors.extend(chunk[: max(0, 65536 - len(errors))])
        tasks = [asyncio.ensure_future(feed()), asyncio.ensure_future(drain_errors())]
        try:
            head = b""
            while b"\r\n\r\n" not in head and b"\n\n" not in head:
                chunk = await child.stdout.read(1 << 16)
                if not chunk:
                    break
                head += chunk
            sep = b"\r\n\r\n" if b"\r\n\r\n" in head else b"\n\n"
            raw, _, body = head.partition(sep)
            status, headers = 200, {}
            for line in raw.decode("latin-1").splitlines():
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.strip().split()[0])
                elif key.strip() and key.lower() not in HOP:
                    headers[key.strip()] = value.strip()
            if not raw:
                await child.wait()
                log.warning("git http-backend for %s gave no answer: %s", repo, errors.decode(errors="replace"))
                return text(500, "git http-backend gave no answer")
            response = web.StreamResponse(status=status, headers=headers)
            await response.prepare(request)
            if body:
                await response.write(body)
            while chunk := await child.stdout.read(1 << 16):
                await response.write(chunk)
            await response.write_eof()
            await child.wait()
            if child.returncode:
                log.warning("git http-backend for %s exited %s: %s", repo, child.returncode,
                            errors.decode(errors="replace")[-2000:])
            return response
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
            for task in tasks:
                task.cancel()


def add_routes(app: web.Application, settings, registry: Registry, door: Door) -> None:
    git = GitHttp(settings, registry, door)
    app.router.add_route("*", "/spaces/{owner}/{repo}/{rest:.+}", git.dispatch)
