"""The gateway's own credentials in a request -- its sign-in cookie and its bearer tokens
(`shk_...`) -- which must never reach Space code: a hostile Space would replay a member's
token. Both paths use these: the relay on raw header bytes, the app's proxy on its headers.
Other cookies and other bearer tokens (an app's own, a Hub token) pass untouched."""
from __future__ import annotations

from spacehooks.access.accounts import TOKEN_PREFIX

COOKIE = "spacehooks_session"
# gradio_client sends its token as x-hf-authorization; proxies may see proxy-authorization
BEARER_HEADERS = ("authorization", "x-hf-authorization", "proxy-authorization")


def clean(name: str, value: str) -> str | None:
    """The header's value with our credentials taken out; None: drop the header."""
    low = name.lower()
    if low == "cookie":
        parts = value.split(";")
        kept = [part for part in parts if part.strip().partition("=")[0].strip() != COOKIE]
        if len(kept) == len(parts):
            return value
        return ";".join(kept).strip() or None
    if low in BEARER_HEADERS:
        return None if TOKEN_PREFIX in value else value
    return value


def clean_bytes(name: bytes, value: bytes) -> bytes | None:
    cleaned = clean(name.decode("latin-1"), value.decode("latin-1"))
    return None if cleaned is None else cleaned.encode("latin-1")


# header names (lower case) that may carry our credentials: the relay looks only at these
CARRIERS = frozenset((b"cookie", *(h.encode() for h in BEARER_HEADERS)))


def may_carry(value: bytes) -> bool:
    """A cheap first look (substring searches) before a header is parsed."""
    return b"shk_" in value or b"spacehooks_session" in value


def sets_ours(value: str | bytes) -> bool:
    """A Space's answer setting the gateway's cookie (its host shares the cookie's domain): a
    hostile Space would sign its visitors in as someone else. Never passed on."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text.partition("=")[0].strip().lower() == COOKIE
