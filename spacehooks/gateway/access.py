"""Who a gateway request comes from, and the door to private Spaces: the bearer token or the
sign-in cookie identified (accounts.identify), failures rate-limited per client address, and
the sign-in page that sets the cookie for the gallery and every Space host."""
from __future__ import annotations

import collections
import socket
import time

from aiohttp import web

from spacehooks.access import accounts
from spacehooks.gateway import pages
from spacehooks.gateway.credentials import COOKIE
from spacehooks.gateway.registry import Registry

WINDOW = 60.0
IDENTITY = web.RequestKey("identity", object)


class Limiter:
    """Failed token or sign-in attempts per client address within the last minute."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.failures: dict[str, collections.deque] = {}

    def retry_after(self, address: str, now: float | None = None) -> int:
        """Seconds this address must wait; 0: it may try."""
        now = now or time.monotonic()
        seen = self.failures.get(address)
        while seen and seen[0] <= now - WINDOW:
            seen.popleft()
        if not seen:
            self.failures.pop(address, None)
            return 0
        return int(seen[0] + WINDOW - now) + 1 if len(seen) >= self.per_minute else 0

    def failed(self, address: str) -> None:
        self.failures.setdefault(address, collections.deque()).append(time.monotonic())
        if len(self.failures) > 100_000:  # a flood of addresses: forget the oldest half
            for key in list(self.failures)[:50_000]:
                del self.failures[key]


def client_address(request: web.Request) -> str:
    """The relay reaches the app on a private Unix socket and appends the client's address to
    X-Forwarded-For (its last entry); anything else is the TCP peer."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None and sock.family == socket.AF_UNIX:
        return request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip() or "unix"
    return request.remote or ""


def credential(request: web.Request, ours_only: bool = False) -> str | None:
    """The bearer token or the sign-in cookie. At a Space's address (`ours_only`) a bearer
    token that is not ours belongs to the app (its own API keys) and is not looked at."""
    for header in ("Authorization", "X-HF-Authorization"):
        token = accounts.bearer(request.headers.get(header))
        if token and (token.startswith(accounts.TOKEN_PREFIX) or not ours_only):
            return token
    if not ours_only and request.method not in ("GET", "HEAD") and request.path.startswith("/api/"):
        # a browser sends the cookie with whatever a hostile Space's page posts here (the Space
        # hosts share its domain, and a text/plain POST needs no preflight): the API's writes
        # take a bearer token, as the Hub's client sends (the settings page's forms carry their
        # own CSRF token)
        return None
    return request.cookies.get(COOKIE) or None


class Door:
    def __init__(self, settings, registry: Registry):
        self.settings = settings
        self.registry = registry
        self.limiter = Limiter(int(settings["api.auth_failures_per_minute"]))

    def too_many(self, wait: int) -> web.Response:
        return web.json_response({"error": "Too many failed sign-in or token attempts; try again later"},
                                 status=429, headers={"Retry-After": str(wait)})

    async def identity(self, request: web.Request, ours_only: bool = False) -> accounts.Identity | None:
        """The caller, or None (anonymous); raises 429 for an address over its failure limit
        and 401 for a credential that is wrong, revoked or expired."""
        if IDENTITY in request:
            return request[IDENTITY]
        token = credential(request, ours_only)
        who = None
        if token:
            address = client_address(request)
            wait = self.limiter.retry_after(address)
            if wait:
                raise web.HTTPTooManyRequests(text='{"error": "Too many failed sign-in or token attempts"}',
                                              content_type="application/json", headers={"Retry-After": str(wait)})
            who = await self.registry.run(accounts.identify, token)
            if who is None:
                self.limiter.failed(address)
                raise web.HTTPUnauthorized(
                    text='{"error": "Invalid credentials in Authorization header"}', content_type="application/json",
                    headers={"X-Error-Message": "Invalid credentials in Authorization header"})
        request[IDENTITY] = who
        return who

    async def space_for(self, request: web.Request, space_id: str, action: str = accounts.READ) -> dict | None:
        """The Space when the caller may do `action` to it; None when it does not exist or
        they may not even see it (the same answer: a private Space is not revealed)."""
        space = await self.registry.space(space_id)
        if space is None:
            return None
        who = await self.identity(request)
        return space if accounts.may(who, accounts.READ, space) and accounts.may(who, action, space) else None

    # -- sign-in: the token becomes an HttpOnly cookie for the gallery and the Space hosts --
    async def signin_page(self, request: web.Request) -> web.Response:
        return pages.render("signin.html", page_title="Sign in", home_url="/", error=None, status=200)

    async def signin(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            return web.Response(status=403, text="403: sign-in from another site\n")
        address = client_address(request)
        wait = self.limiter.retry_after(address)
        if wait:
            return pages.render("signin.html", page_title="Sign in", home_url="/", status=429,
                                headers={"Retry-After": str(wait)}, error="Too many attempts; try again in a minute.")
        form = await request.post()
        token = str(form.get("token", "")).strip()
        who = await self.registry.run(accounts.identify, token)
        if who is None:
            self.limiter.failed(address)
            return pages.render("signin.html", page_title="Sign in", home_url="/", status=401,
                                error="That token is not valid (unknown, revoked or expired).")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, token, domain=self.settings["gateway.domain"], path="/", secure=True,
                            httponly=True, samesite="Lax", max_age=30 * 86400)
        return response

    async def signout(self, request: web.Request) -> web.Response:
        if not self._same_origin(request):
            return web.Response(status=403, text="403: sign-out from another site\n")
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, domain=self.settings["gateway.domain"], path="/")
        return response

    def _same_origin(self, request: web.Request) -> bool:
        """A form posted from another site (login CSRF) is refused; clients without Origin pass."""
        origin = request.headers.get("Origin")
        return origin is None or origin == pages.public_url(self.settings, self.settings["gateway.domain"])
