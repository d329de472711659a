"""Server-rendered pages: the gallery, a Space's page, and the pages shown instead of an app.

Everything that comes from a README goes through Jinja's autoescaping; nothing is marked safe.
"""
from __future__ import annotations

import hashlib
import html
from pathlib import Path
from urllib.parse import quote

import jinja2
from aiohttp import web

from spacehooks import stages
from spacehooks.gateway.registry import host_label

TEMPLATES = Path(__file__).parent / "templates"
COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")

# What a person reads for each of the Hub's stage names.
STAGE_LABELS = {
    stages.NO_APP_FILE: ("No application file", "error"), stages.CONFIG_ERROR: ("Configuration error", "error"),
    stages.BUILDING: ("Building", "busy"), stages.BUILD_ERROR: ("Build error", "error"),
    stages.APP_STARTING: ("Starting", "busy"), stages.RUNNING: ("Running", "ok"),
    stages.RUNNING_BUILDING: ("Running · rebuilding", "ok"), stages.RUNNING_APP_STARTING: ("Running · restarting", "ok"),
    stages.RUNTIME_ERROR: ("Runtime error", "error"), stages.PAUSED: ("Paused", "idle"), stages.STOPPED: ("Stopped", "idle"),
    stages.SLEEPING: ("Sleeping", "idle"), stages.DELETING: ("Deleting", "idle"),
    stages.WAITING_CAPACITY: ("Waiting for room on the server", "busy"),
}

# The page shows the app (and reloads when that changes) in these stages.
LIVE = (*stages.ANSWERING, stages.SLEEPING)

_env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(TEMPLATES), str(TEMPLATES.parent / "static")]),
                          autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)
# space.js keeps the badge current with these, so that no stage name is spelled outside stages.py
_env.globals.update(LIVE_STAGES=list(LIVE), STAGE_TONES={stage: tone for stage, (_, tone) in STAGE_LABELS.items()})


def public_url(settings, host: str) -> str:
    return settings["gateway.public_url"].format(host=host).rstrip("/")


def space_host(settings, space_id: str) -> str:
    return f"{host_label(space_id)}.{settings['gateway.domain']}"


def _text(value, limit: int | None = None) -> str:
    text = "" if value is None or isinstance(value, (dict, list)) else str(value)
    return text[:limit] if limit else text


def _color(value, space_id: str, salt: str) -> str:
    if isinstance(value, str) and value.lower() in COLORS:
        return value.lower()
    # The Hub picks a random colour when none is set; a stable one keeps the gallery calm.
    return COLORS[hashlib.sha1((space_id + salt).encode()).digest()[0] % len(COLORS)]


def view(settings, space: dict) -> dict:
    """What templates may show of a Space: plain strings and flags, never raw config."""
    config = space.get("config") or {}
    owner, _, name = space["id"].partition("/")
    stage = space.get("stage") or stages.NEW
    label, tone = STAGE_LABELS.get(stage, (stage.title(), "idle"))
    base_path = _text(config.get("base_path"))
    if not base_path.startswith("/") or base_path.startswith("//"):
        base_path = "/"
    # a README value becomes part of a URL and of a snippet people paste into their pages:
    # percent-encode what is not a path character (quotes, markup, spaces, backslashes)
    base_path = quote(base_path, safe="/%-._~!$&()*+,;=:@?#")
    host = space_host(settings, space["id"])
    app_url = public_url(settings, host) + base_path
    return {
        "id": space["id"], "owner": owner, "name": name,
        "title": _text(config.get("title")) or name,
        "emoji": _text(config.get("emoji"), 16) or "🤗",
        "color_from": _color(config.get("colorFrom"), space["id"], "from"),
        "color_to": _color(config.get("colorTo"), space["id"], "to"),
        "description": _text(config.get("short_description"), 60),
        "pinned": config.get("pinned") is True,
        "sdk": _text(config.get("sdk")) or "unknown",
        "license": _text(config.get("license")),
        "suggested_hardware": _text(config.get("suggested_hardware")),
        "hardware": _text(space.get("hardware")),
        "header": "mini" if config.get("header") == "mini" else "default",
        "full_width": config.get("fullWidth") is not False,
        "embeddable": config.get("disable_embedding") is not True,
        "stage": stage, "stage_label": label, "stage_tone": tone,
        "live": stage in LIVE, "run_log_first": stage == stages.RUNTIME_ERROR,
        "error": _text(space.get("error")),
        # what a starting version waits for, as its engine said ("waiting for a GPU node: ...")
        "waiting": _text(space.get("error")) if stage in (stages.APP_STARTING, stages.WAITING_CAPACITY) else "",
        "commit": _text(space.get("commit"))[:12],
        "host": host, "app_url": app_url,
        # the text shown for copying: escaped once more by the template when it is shown
        "embed": f'<iframe src="{html.escape(app_url, quote=True)}" frameborder="0" width="850" height="450"></iframe>',
        "page_url": f"/spaces/{owner}/{name}",
        "can_duplicate": False,  # space_page: only for a visitor who may create Spaces
        "updated_at": space.get("updated_at") or 0,
    }


def render(template: str, status: int = 200, headers: dict | None = None, **context) -> web.Response:
    html = _env.get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=headers)


def gallery(settings, spaces: list[dict]) -> web.Response:
    views = [view(settings, s) for s in spaces]
    views.sort(key=lambda v: (not v["pinned"], -v["updated_at"], v["id"]))
    return render("gallery.html", spaces=views, domain=settings["gateway.domain"],
                  home_url="/", page_title="Spaces")


def space_page(settings, space: dict, rollout_note: str | None = None, visitor=None, member: bool = False) -> web.Response:
    """rollout_note: the engine's word on how the last version rolled out (Engine.rollout_note)."""
    v = {**view(settings, space), "rollout_note": _text(rollout_note)}
    main_origin = public_url(settings, settings["gateway.domain"])
    if visitor is not None and visitor.scope == "write":
        # a signed-in user with a write token may create Spaces under their own name: the page
        # shows the client call that copies this one there (the Hub API's duplicate)
        v["can_duplicate"] = True
        v["duplicate_command"] = (f'HfApi(endpoint="{main_origin}").duplicate_repo("{space["id"]}", '
                                  f'"{visitor.name}/{v["name"]}", repo_type="space")')
    return render("space.html", space=v, home_url="/", page_title=f"{v['title']} - a Hugging Face Space by {v['owner']}",
                  main_origin=main_origin, member=member)


def not_found(settings, what: str) -> web.Response:
    return render("status.html", status=404, page_title="404", kind="unknown", space=None, emoji="🔭",
                  heading="This Space does not exist", message=what, home_url=public_url(settings, settings["gateway.domain"]),
                  refresh=None)


def space_status(settings, space: dict, kind: str, message: str = "", refresh: int | None = None,
                 status: int = 503) -> web.Response:
    """Shown at a Space's own address instead of the app: building, failed, waking, paused."""
    v = view(settings, space)
    headings = {
        "building": "This Space is building", "starting": "This Space is starting",
        "failed": "This Space has an error", "waking": "Waking this Space up",
        "paused": "This Space is paused", "unreachable": "This Space is not answering",
    }
    headers = {"Retry-After": str(refresh)} if refresh else None
    return render("status.html", status=status, headers=headers, page_title=v["title"], kind=kind, space=v,
                  emoji=v["emoji"], heading=headings[kind], message=message or v["error"],
                  home_url=public_url(settings, settings["gateway.domain"]),
                  page_url=public_url(settings, settings["gateway.domain"]) + v["page_url"], refresh=refresh)
