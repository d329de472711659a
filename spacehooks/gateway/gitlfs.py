"""The Git LFS endpoint of a Space's repository (`<repo>.git/info/lfs`): the batch API with
the basic transfer, whose upload, verify and download addresses the gateway serves itself.

Objects are stored in git-lfs's own layout inside the bare repository
(`<repo>/lfs/objects/aa/bb/<oid>`, where a build reads them), written and read by programs
running as the repository's owner account (the gateway's account never follows a path that
account controls). An upload is kept only when its size and sha256 match its oid.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path

from aiohttp import web

from spacehooks import accounts, proc
from spacehooks.gateway.access import client_address

OID = re.compile(r"[0-9a-f]{64}")
JSON = "application/vnd.git-lfs+json"


def answer(data: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type=JSON.split(";")[0])


def failure(status: int, message: str) -> web.Response:
    return answer({"message": message}, status)


def store(repo: Path, oid: str) -> Path:
    return repo / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


async def _owned(args: list, uid: int) -> int:
    child = await proc.start(args, env={"PATH": "/usr/bin:/bin"}, user=uid)
    child.stdin.close()
    await child.communicate()
    return child.returncode


async def serve_lfs(git, request: web.Request, rest: str) -> web.StreamResponse:
    """`git` is the GitHttp front (admission by the owner rules)."""
    if rest == "objects/batch" and request.method == "POST":
        return await batch(git, request)
    parts = rest.split("/")
    if len(parts) == 2 and parts[0] == "objects" and OID.fullmatch(parts[1]):
        if request.method == "PUT":
            return await upload(git, request, parts[1])
        if request.method == "GET":
            return await download(git, request, parts[1])
    if rest == "objects/verify" and request.method == "POST":
        return await verify(git, request)
    return failure(404, "Not found")


async def _space(git, request, action):
    """(space, repository, its owner's uid, identity) or (None, the refusal, None, None)."""
    space, who = await git.admit(request, action)
    if space is None:
        return None, who, None, None
    repo = Path(space["repo_path"])
    try:
        uid = (repo / "objects").stat().st_uid
    except OSError:
        return None, failure(404, "The Space's repository is missing"), None, None
    return space, repo, uid, who


async def batch(git, request: web.Request) -> web.Response:
    try:
        body = await request.json()
        operation, objects = body["operation"], body["objects"]
        if operation not in ("upload", "download") or not isinstance(objects, list):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return failure(422, "a batch request is {operation: upload|download, objects: [{oid, size}]}")
    if "basic" not in (body.get("transfers") or ["basic"]):
        return failure(422, "only the basic transfer is served here")
    space, repo, uid, who = await _space(git, request, accounts.WRITE if operation == "upload" else accounts.READ)
    if space is None:
        return repo
    cap = git.settings["git_http.lfs_max_bytes"]
    proto = request.headers.get("X-Forwarded-Proto", request.scheme) if client_address(request) != request.remote \
        else request.scheme
    base = f"{proto}://{request.host}{request.path.rsplit('/objects/batch', 1)[0]}/objects"
    header = {"Authorization": request.headers["Authorization"]} if "Authorization" in request.headers else {}
    out = []
    for item in objects[:10000]:
        oid, size = (item.get("oid"), item.get("size")) if isinstance(item, dict) else (None, None)
        entry = {"oid": oid, "size": size}
        if not isinstance(oid, str) or not OID.fullmatch(oid):
            entry["error"] = {"code": 422, "message": "an oid is 64 lowercase hex digits (sha256)"}
        elif not isinstance(size, int) or isinstance(size, bool) or size < 0:
            entry["error"] = {"code": 422, "message": "size must be a whole number of bytes"}
        elif size > cap:
            entry["error"] = {"code": 422, "message": f"{size} bytes is over this server's limit of {cap}"
                              " (setting git_http.lfs_max_bytes)"}
        else:
            have = await _owned(["test", "-f", str(store(repo, oid))], uid) == 0
            entry["authenticated"] = True
            if operation == "upload" and not have:
                entry["actions"] = {"upload": {"href": f"{base}/{oid}", "header": header, "expires_in": 3600},
                                    "verify": {"href": f"{base}/verify", "header": header, "expires_in": 3600}}
            elif operation == "download":
                if have:
                    entry["actions"] = {"download": {"href": f"{base}/{oid}", "header": header, "expires_in": 3600}}
                else:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
        out.append(entry)
    return answer({"transfer": "basic", "objects": out, "hash_algo": "sha256"})


async def upload(git, request: web.Request, oid: str) -> web.Response:
    space, repo, uid, who = await _space(git, request, accounts.WRITE)
    if space is None:
        return repo
    cap = git.settings["git_http.lfs_max_bytes"]
    final = store(repo, oid)
    if await _owned(["mkdir", "-p", "--", str(final.parent)], uid):
        return failure(500, "the LFS store cannot be made in the repository")
    partial = final.with_name(f".{oid}.{secrets.token_hex(6)}.partial")
    # dd as the owner writes what the gateway streams; nothing is kept until it checks out
    child = await proc.start(["dd", f"of={partial}", "bs=1M", "status=none", "conv=fsync"],
                             env={"PATH": "/usr/bin:/bin"}, user=uid)
    digest, size, refused = hashlib.sha256(), 0, None
    try:
        async for chunk in request.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > cap:
                refused = failure(413, f"the object is over this server's limit of {cap} bytes")
                break
            digest.update(chunk)
            child.stdin.write(chunk)
            await child.stdin.drain()
    finally:
        child.stdin.close()
        await child.communicate()
    if refused is None and child.returncode:
        refused = failure(500, "the object could not be written")
    if refused is None and digest.hexdigest() != oid:
        refused = failure(422, f"the content's sha256 is {digest.hexdigest()}, not {oid}")
    if refused is not None:
        await _owned(["rm", "-f", "--", str(partial)], uid)
        return refused
    await _owned(["mv", "-f", "-T", "--", str(partial), str(final)], uid)
    await git.registry.run(accounts.audit, who, "lfs-upload", space["id"], f"{oid[:12]} {size}")
    return web.Response(status=200)


async def verify(git, request: web.Request) -> web.Response:
    space, repo, uid, who = await _space(git, request, accounts.WRITE)
    if space is None:
        return repo
    try:
        body = await request.json()
        oid, size = body["oid"], body["size"]
    except (ValueError, KeyError, TypeError):
        return failure(422, "verify takes {oid, size}")
    if not isinstance(oid, str) or not OID.fullmatch(oid) or not isinstance(size, int):
        return failure(422, "verify takes {oid, size}")
    child = await proc.start(["stat", "-c", "%s", "--", str(store(repo, oid))], env={"PATH": "/usr/bin:/bin"}, user=uid)
    child.stdin.close()
    out, _ = await child.communicate()
    if child.returncode or out.decode().strip() != str(size):
        return failure(404, f"object {oid} of {size} bytes is not stored")
    return answer({})


async def download(git, request: web.Request, oid: str) -> web.StreamResponse:
    space, repo, uid, who = await _space(git, request, accounts.READ)
    if space is None:
        return repo
    child = await proc.start(["cat", "--", str(store(repo, oid))], env={"PATH": "/usr/bin:/bin"}, user=uid)
    child.stdin.close()
    try:
        first = await child.stdout.read(1 << 20)
        if not first:
            await child.wait()
            if child.returncode:
                return failure(404, "Object does not exist")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        await response.write(first)
        while chunk := await child.stdout.read(1 << 20):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
