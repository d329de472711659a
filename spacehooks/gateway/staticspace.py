"""Static Spaces (sdk: static): the deploy folder each one serves, loaded once per deployed
commit, and the aiohttp app's side of answering from it.

Answers are planned from the manifest alone (`staticplan.py`): a request path is only ever a key
into it, and files are opened by blob id inside the deploy folder. The relay sends a planned
answer with sendfile (`staticsend.py`); the app (the first request after a deploy, and
`gateway.relay: false`) streams it in chunks.
"""
from __future__ import annotations

import asyncio
import logging
import os
import weakref
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from spacehooks.build import staticsite
from spacehooks.errors import SpaceError
from spacehooks.gateway.staticplan import File, plan

log = logging.getLogger("spacehooks.gateway")

CHUNK = 256 * 1024  # the app path's read size; memory per answer stays at this
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
SMALL_FILE = 16 * 1024  # files up to this size are kept in memory once read ...
SMALL_KEPT = 4 * 1024 * 1024  # ... up to this much per deployed site


class Site:
    """One deployed commit of a static Space: its manifest and an open handle on its folder."""

    def __init__(self, space_id: str, commit: str, index: str, folder):
        self.space_id, self.commit, self.index = space_id, commit, index
        self.files = {path: File(path, entry) for path, entry in staticsite.read_manifest(folder).items()}
        self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.release = weakref.finalize(self, os.close, self.fd)  # when no answer in flight holds it any more
        self.routes: dict[str, tuple[int, str]] = {}  # request target -> where it leads
        self.small: dict[str, bytes] = {}  # contents of small files, up to SMALL_KEPT bytes in all
        self.small_size = 0

    def open(self, name: str) -> int:
        # names are blob ids from the manifest (checked when it was read), plus .gz/.br
        return os.open(name, OPEN_FLAGS, dir_fd=self.fd)


class Sites:
    """The deploy folder each static Space serves now, loaded once per deployed commit."""

    def __init__(self, settings):
        self.home = settings.home
        self.export_user = settings["build.export_user"]
        self.settings = settings  # where the LFS store is, for a deploy folder written again
        self._sites: dict[str, Site] = {}
        self._loading: dict[tuple[str, str], asyncio.Future] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="static")

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        for site in self._sites.values():
            site.release()  # the gateway stops: no answer is in flight any more
        self._sites.clear()

    def cached(self, space: dict) -> Site | None:
        site = self._sites.get(space["id"])
        return site if site is not None and site.commit == space.get("commit") else None

    def forget(self, site: Site) -> None:
        if self._sites.get(site.space_id) is site:
            del self._sites[site.space_id]

    async def load(self, space: dict) -> Site:
        key = (space["id"], space["commit"])
        future = self._loading.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._loading[key] = loop.run_in_executor(self._thread, self._load, space)
            future.add_done_callback(lambda _: self._loading.pop(key, None))
        site = await asyncio.shield(future)
        self._sites[site.space_id] = site
        return site

    def _load(self, space: dict) -> Site:
        folder = staticsite.deploy_dir(self.home, space["id"], space["commit"])
        if not (folder / staticsite.MANIFEST).is_file():
            # deployed before this version wrote deploy folders, or removed by hand: write it now
            log.info("%s: writing the static files of %s", space["id"], space["commit"][:12])
            staticsite.materialise(self.home, space["id"], space["repo_path"], space["commit"],
                                   export_user=self.export_user, settings=self.settings)
        return Site(space["id"], space["commit"], index_of(space), folder)


def index_of(space: dict) -> str:
    config = space.get("config") or {}
    index = str(config.get("app_file") or "index.html").lstrip("/")
    # a built Space serves the folder holding app_file (staticbuild.py): its name is the index
    return index.rsplit("/", 1)[-1] if config.get("app_build_command") else index


class StaticFiles:
    """The aiohttp app's side: the same answers, the file streamed in CHUNK pieces."""

    def __init__(self, sites: Sites):
        self.sites = sites

    async def serve(self, request: web.Request, space: dict, extra_headers, fresh) -> web.StreamResponse:
        site = self.sites.cached(space)
        if site is None:
            # the snapshot may be a second old: load what the store says serves now
            space = await fresh() or space
            try:
                site = await self.sites.load(space)
            except (SpaceError, OSError, ValueError, KeyError) as exc:
                reason = exc.format_message() if isinstance(exc, SpaceError) else str(exc)
                log.error("%s: cannot load the static files of %s: %s", space["id"], space["commit"][:12], reason)
                return web.Response(status=503, text=f"503: the files of Space {space['id']} cannot be read now\n",
                                    headers={"Retry-After": "10"})
        answer = plan(site, request.raw_path, request.headers.get)
        fd = -1
        if answer.file is not None and request.method != "HEAD":
            try:
                fd = site.open(answer.file[0])
            except FileNotFoundError:  # removed by gc: load the folder the store names now
                self.sites.forget(site)
                site = await self.sites.load(await fresh() or space)
                answer = plan(site, request.raw_path, request.headers.get)
                fd = site.open(answer.file[0]) if answer.file is not None else -1
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        for key, value in answer.headers:
            response.headers[key] = value
        extra_headers(response.headers)
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            if fd >= 0:
                _, offset, left = answer.file
                while left > 0:
                    data = os.pread(fd, min(CHUNK, left), offset)
                    if not data:  # the file shrank under us: the client must see the answer cut
                        request.transport.close()
                        return response
                    await response.write(data)
                    offset += len(data)
                    left -= len(data)
            elif answer.body:
                await response.write(answer.body)
            await response.write_eof()
            return response
        finally:
            if fd >= 0:
                os.close(fd)
