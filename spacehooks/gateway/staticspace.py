"""Static Spaces (sdk: static) are served straight from the deployed commit: no container."""
from __future__ import annotations

import asyncio
import mimetypes
import posixpath
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote

from aiohttp import web

from spacehooks.gitrepo import Repo

# Git objects never change: the blob id is a perfect ETag.
CACHE_CONTROL = "no-cache"


class StaticFiles:
    def __init__(self):
        self._repos: dict[str, Repo] = {}
        # pygit2 repositories are not shared between threads: one reader thread.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="git")

    def close(self) -> None:
        self._thread.shutdown(wait=False)

    def _repo(self, path: str) -> Repo:
        repo = self._repos.get(path)
        if repo is None:
            repo = self._repos[path] = Repo(path)
        return repo

    def _lookup(self, repo_path: str, commit: str, candidates: list[str]):
        repo = self._repo(repo_path)
        for path in candidates:
            entry = repo.entry(commit, path)
            if entry is not None and entry.kind == "link":
                resolved, problem = repo.resolve_inside(commit, path)
                entry = repo.entry(commit, resolved) if resolved and not problem else None
            if entry is not None and entry.kind == "blob":
                return path, entry.oid
        return None, None

    def _read(self, repo_path: str, oid: str) -> bytes:
        return self._repo(repo_path).repo[oid].data

    async def serve(self, request: web.Request, space: dict, extra_headers) -> web.StreamResponse:
        config = space.get("config") or {}
        index = str(config.get("app_file") or "index.html").lstrip("/")
        rel = posixpath.normpath(unquote(request.path)).lstrip("/")
        if rel in ("", "."):
            candidates = [index]
        elif rel.startswith("..") or rel == ".git" or rel.startswith(".git/"):
            candidates = []
        else:
            candidates = [rel, posixpath.join(rel, "index.html")]
        loop = asyncio.get_running_loop()
        path, oid = await loop.run_in_executor(
            self._thread, self._lookup, space["repo_path"], space["commit"], candidates)
        headers = {"Cache-Control": CACHE_CONTROL}
        if path is None:
            response = web.Response(status=404, text=f"404: {rel} is not in this Space\n", headers=headers)
            extra_headers(response.headers)
            return response
        if rel and path != rel and not request.path.endswith("/"):
            # a folder: its index.html's relative links need the trailing slash. The Location is
            # made from the normalised path, encoded: never `//host` or `/\host`, which browsers
            # follow to another site
            location = quote("/" + rel + "/", safe="/-._~!$&'()*+,;=:@")
            raise web.HTTPMovedPermanently(location + (f"?{request.query_string}" if request.query_string else ""))
        etag = f'"{oid}"'
        headers["ETag"] = etag
        if request.headers.get("If-None-Match") == etag:
            response = web.Response(status=304, headers=headers)
        else:
            body = await loop.run_in_executor(self._thread, self._read, space["repo_path"], oid)
            ctype, encoding = mimetypes.guess_type(path)
            ctype = ctype or "application/octet-stream"
            if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
                ctype += "; charset=utf-8"
            headers["Content-Type"] = ctype
            if encoding:
                headers["Content-Encoding"] = encoding
            response = web.Response(body=body if request.method != "HEAD" else None, headers=headers)
            if request.method == "HEAD":
                response.headers["Content-Length"] = str(len(body))
        extra_headers(response.headers)
        return response
