"""Hook installation for gitolite3: our hooks go to `LOCAL_CODE/hooks/common`, which
gitolite links into every repository (new ones included) on `gitolite setup --hooks-only`.

PATH is the gitolite user's home (the folder holding `.gitolite.rc`). Run as that user or
as root; files are handed to the owner of `.gitolite.rc` either way.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from spacehooks import config as config_mod
from spacehooks.errors import SpaceError
from spacehooks.hookenv import CHAINED_SUFFIX
from spacehooks.install import HOOK_NAMES, _is_ours, install_hook, set_config
from spacehooks.proc import run

# The line gitolite's default rc ships commented out; enabling it is what its docs ask for.
_COMMENTED_LOCAL_CODE = re.compile(r'^(\s*)#\s*(LOCAL_CODE\s*=>\s*"\$ENV\{HOME\}/local",)', re.M)


def _home(path: Path) -> Path:
    if not (path / ".gitolite.rc").is_file():
        raise SpaceError(f"{path}: no .gitolite.rc here",
                         hint="give the gitolite user's home folder (where `gitolite setup` wrote .gitolite.rc)")
    return path.resolve()


def _as_owner(home: Path, args: list[str], check: bool = True) -> str:
    """Run a gitolite command as the owner of the installation, with its HOME."""
    owner = (home / ".gitolite.rc").stat()
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if os.geteuid() == owner.st_uid:
        result = run(args, env=env, cwd=home, check=check)
    else:
        import pwd
        user = pwd.getpwuid(owner.st_uid).pw_name
        result = run(["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()), *args],
                     cwd=home, check=check)
    return result.stdout.decode(errors="replace").strip()


def local_code(home: Path, enable: bool) -> Path | None:
    """LOCAL_CODE as gitolite reads it; with `enable`, switch on the rc's default line."""
    value = _as_owner(home, ["gitolite", "query-rc", "LOCAL_CODE"], check=False)
    if value:
        return Path(value)
    if not enable:
        return None
    rc = home / ".gitolite.rc"
    text = rc.read_text()
    if not _COMMENTED_LOCAL_CODE.search(text):
        raise SpaceError(f"{rc}: LOCAL_CODE is not set and the default line to enable it is missing",
                         hint='add   LOCAL_CODE => "$ENV{HOME}/local",   to the %RC block, then run install again')
    rc.write_text(_COMMENTED_LOCAL_CODE.sub(r"\1\2", text, count=1))
    value = _as_owner(home, ["gitolite", "query-rc", "LOCAL_CODE"])
    if not value:
        raise SpaceError(f"{rc}: LOCAL_CODE still unset after enabling it", hint="check the file by hand")
    return Path(value)


def _give_to_owner(home: Path, paths: list[Path]) -> None:
    owner = (home / ".gitolite.rc").stat()
    for path in paths:
        if path.exists() and os.geteuid() == 0:
            os.chown(path, owner.st_uid, owner.st_gid)


def install_home(settings: config_mod.Settings, home: Path) -> list[str]:
    notes = []
    if local_code(home, enable=False) is None:
        notes.append("enabled LOCAL_CODE in .gitolite.rc")
    code = local_code(home, enable=True)
    common = code / "hooks" / "common"
    made = [p for p in (code, code / "hooks", common) if not p.exists()]
    common.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        target = common / name
        install_hook(settings, target, name, True, notes)
        made.append(target)
    # Push options (`git push -o wait`) and git's checks of received objects live in
    # receive-pack's config; the gitolite user's global config covers every repository it serves.
    global_config = ["git", "config", "--global"]
    set_config(lambda args: _as_owner(home, global_config + args, check=False),
               lambda args: _as_owner(home, global_config + args), notes)
    _give_to_owner(home, made)
    _as_owner(home, ["gitolite", "setup", "--hooks-only"])
    return notes


def uninstall_home(home: Path) -> list[str]:
    notes = []
    code = local_code(home, enable=False)
    if code is None:
        return notes
    common = code / "hooks" / "common"
    for name in HOOK_NAMES:
        target = common / name
        if target.exists() and _is_ours(target):
            target.unlink()
            notes.append(f"removed {name}")
        chained = common / (name + CHAINED_SUFFIX)
        if chained.exists() and not target.exists():
            chained.replace(target)
            notes.append(f"restored the previous {name}")
    _as_owner(home, ["gitolite", "setup", "--hooks-only"])
    notes += _remove_dangling_links(home, common)
    return notes


def _remove_dangling_links(home: Path, common: Path) -> list[str]:
    """gitolite links hooks into each repo but never removes a link whose file is gone."""
    base = Path(_as_owner(home, ["gitolite", "query-rc", "GL_REPO_BASE"]) or home / "repositories")
    removed = 0
    for link in base.glob("**/hooks/*"):
        if link.is_symlink() and not link.exists() and Path(os.readlink(link)).parent == common:
            link.unlink()
            removed += 1
    return [f"removed {removed} stale hook links"] if removed else []


def install(settings: config_mod.Settings, paths: list[Path], echo: Callable = print) -> None:
    for path in paths:
        home = _home(path)
        notes = install_home(settings, home)
        echo(f"{home}: {', '.join(notes) if notes else 'unchanged'} (gitolite layout)")


def uninstall(settings: config_mod.Settings, paths: list[Path], echo: Callable = print) -> None:
    for path in paths:
        home = _home(path)
        notes = uninstall_home(home)
        echo(f"{home}: {', '.join(notes) if notes else 'unchanged'} (gitolite layout)")

