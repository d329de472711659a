"""What git and the git servers tell a hook: who pushed, which Space the repository is, the
push options, and the name a hook that was there before is kept under (chained).

Imported by the hooks on every push and by what installs or re-checks them; kept free of
heavy imports (the push path pays for each)."""
from __future__ import annotations

import os
import pwd
import re
from pathlib import Path

CHAINED_SUFFIX = ".spacehooks-chained"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def pusher_identity(env: dict) -> str:
    """Who pushed, from the variables each git server sets (PLATFORM.md)."""
    for key in ("GITEA_PUSHER_NAME", "GL_USERNAME", "GL_USER", "REMOTE_USER", "SPACEHOOKS_PUSHER"):
        if env.get(key):
            return env[key]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def space_id_for(repo_path: Path, settings, env: dict) -> str:
    if env.get("GITEA_REPO_USER_NAME") and env.get("GITEA_REPO_NAME"):
        parts = [env["GITEA_REPO_USER_NAME"], env["GITEA_REPO_NAME"]]
    elif env.get("GL_PROJECT_PATH"):
        parts = env["GL_PROJECT_PATH"].split("/")
    elif env.get("GL_REPO"):
        parts = env["GL_REPO"].split("/")
    else:
        path = repo_path.resolve()
        root = Path(settings["repo_root"]).resolve()
        parts = list(path.relative_to(root).parts) if path.is_relative_to(root) and path != root else list(path.parts[-2:])
    parts = [p.removesuffix(".git") for p in parts if p]
    if len(parts) == 1:
        parts.insert(0, settings["default_owner"])
    owner, name = "-".join(parts[:-1]), parts[-1]
    if not (NAME.fullmatch(owner) and NAME.fullmatch(name)):
        from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
        raise SpaceError(f"cannot make a Space id from {repo_path}: owner and name must be letters, digits, . _ -")
    return f"{owner}/{name}"


def push_options(env: dict) -> dict:
    options = {}
    for i in range(int(env.get("GIT_PUSH_OPTION_COUNT", "0") or 0)):
        key, _, value = env.get(f"GIT_PUSH_OPTION_{i}", "").partition("=")
        if key:
            options[key] = value
    return options


# secretscan.CONFIRM_OPTION: post-receive reads it too, and must not import pygit2 with secretscan
SECRET_OK = "secret-ok"
FINGERPRINT = re.compile(r"[0-9a-f]{12}")
