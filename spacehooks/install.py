"""Hook installation per git-server layout. Our hooks carry a marker; any hook that was
there before is kept and chained (plain layout) or left alone (`.d` layouts)."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Callable

from spacehooks import config as config_mod
from spacehooks import lfs
from spacehooks.errors import SpaceError
from spacehooks.hookenv import CHAINED_SUFFIX, NAME as _NAME
from spacehooks.proc import git

MARKER = "spacehooks-managed hook"
HOOK_NAMES = ("pre-receive", "post-receive")
D_NAME = "spacehooks"

# git's own checks of received objects (receive-pack runs index-pack --strict, which makes
# every check that defaults to a warning an error). Names a checkout or an export could
# misread are errors; what only old tools wrote (odd dates, e-mails, modes) stays a warning,
# so real histories still push. Ids known to git 2.20 and later: an unknown id makes every
# push print a warning.
FSCK_ERRORS = ("hasDot", "hasDotdot", "hasDotgit", "fullPathname", "emptyName", "duplicateEntries",
               "treeNotSorted")
FSCK_WARNINGS = ("badDate", "badDateOverflow", "badEmail", "badName", "badTimezone", "missingEmail",
                 "missingNameBeforeEmail", "missingSpaceBeforeDate", "missingSpaceBeforeEmail",
                 "zeroPaddedDate", "zeroPaddedFilemode", "badFilemode", "missingTaggerEntry", "badTagName",
                 "nulInCommit")
FSCK_CONFIG = {"receive.fsckObjects": "true",
               **{f"receive.fsck.{name}": "error" for name in FSCK_ERRORS},
               **{f"receive.fsck.{name}": "warn" for name in FSCK_WARNINGS}}


def template_dir() -> Path:
    for candidate in (Path(__file__).parent / "githooks", Path(__file__).parents[1] / "githooks",
                      Path(sys.prefix) / "share" / "spacehooks" / "githooks"):
        if (candidate / "pre-receive").exists():
            return candidate
    raise SpaceError("hook templates not found; reinstall the spacehooks package")


def render(name: str, settings: config_mod.Settings) -> str:
    config_path = os.environ.get("SPACEHOOKS_CONFIG", config_mod.DEFAULT_CONFIG)
    env = (f"SPACEHOOKS_CONFIG=${{SPACEHOOKS_CONFIG:-{shlex.quote(str(Path(config_path).resolve()))}}}\n"
           f"SPACEHOOKS_HOME=${{SPACEHOOKS_HOME:-{shlex.quote(str(settings.home.resolve()))}}}\n"
           "export SPACEHOOKS_CONFIG SPACEHOOKS_HOME")
    text = (template_dir() / name).read_text()
    return text.replace("@ENV@", env).replace("@PYTHON@", shlex.quote(sys.executable))


def is_bare(path: Path) -> bool:
    return ((path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()
            and not (path / ".git").exists())


def find_bare_repos(path: Path) -> list[Path]:
    if is_bare(path):
        return [path]
    found = []
    for folder, dirs, _ in os.walk(path):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            if is_bare(here / d):
                found.append(here / d)
            elif not d.startswith("."):
                keep.append(d)
        dirs[:] = keep
    return found


def detect_layout(repo: Path) -> str:
    existing = repo / "hooks" / "pre-receive"
    if existing.is_file() and not _is_ours(existing) and not (repo / "hooks" / "pre-receive.d").is_dir():
        head = existing.read_text(errors="replace")[:2000].lower()
        if "gitea" in head or "forgejo" in head:
            return "gitea"
    return lfs.detect_layout(repo)  # the folders the server makes: the LFS store goes by them too


def _is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace")[:500]
    except OSError:
        return False


def _write(path: Path, content: str) -> bool:
    if path.exists() and path.read_text(errors="replace") == content and os.access(path, os.X_OK):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.chmod(0o755)
    tmp.replace(path)
    return True


def _hook_paths(repo: Path, layout: str, name: str) -> Path:
    if layout == "plain":
        return repo / "hooks" / name
    if layout == "gitea":
        return repo / "hooks" / f"{name}.d" / D_NAME
    if layout == "gitlab":
        return repo / "custom_hooks" / f"{name}.d" / D_NAME
    raise SpaceError(f"unknown layout {layout!r}")


def install_hook(settings: config_mod.Settings, target: Path, name: str, chain: bool, notes: list[str]) -> None:
    """Write our hook at target; with chain, a foreign hook there is kept to run first."""
    if chain and target.exists() and not _is_ours(target):
        chained = target.with_name(name + CHAINED_SUFFIX)
        if chained.exists():
            raise SpaceError(f"{target.parent}: both {target.name} and {chained.name} exist",
                             hint="merge them by hand, then run install again")
        target.replace(chained)
        notes.append(f"kept the previous {name} (runs first, as {chained.name})")
    if _write(target, render(name, settings)):
        notes.append(f"installed {name}")


def missing_config(read: Callable[[list[str]], str]) -> dict[str, str]:
    """Our receive settings that differ; read runs `git config ARGS` on the file in question."""
    wanted = {"receive.advertisePushOptions": "true", **FSCK_CONFIG}
    have = {}
    for line in read(["--get-regexp", r"^receive\."]).splitlines():
        key, _, value = line.partition(" ")
        have[key.lower()] = value
    return {k: v for k, v in wanted.items() if have.get(k.lower()) != v}


def set_config(read: Callable[[list[str]], str], write: Callable[[list[str]], object], notes: list[str]) -> None:
    missing = missing_config(read)
    for key, value in missing.items():
        write([key, value])
    if "receive.advertisePushOptions" in missing:
        notes.append("enabled push options")
    if set(missing) & set(FSCK_CONFIG):
        notes.append("enabled git's checks of received objects")


def install_repo(settings: config_mod.Settings, repo: Path, layout: str) -> list[str]:
    notes: list[str] = []
    for name in HOOK_NAMES:
        install_hook(settings, _hook_paths(repo, layout, name), name, layout == "plain", notes)
    set_config(lambda args: git(["config", "--local", *args], repo, check=False),
               lambda args: git(["config", "--local", *args], repo), notes)
    return notes


def uninstall_repo(repo: Path, layout: str) -> list[str]:
    notes = []
    for name in HOOK_NAMES:
        target = _hook_paths(repo, layout, name)
        if target.exists() and _is_ours(target):
            target.unlink()
            notes.append(f"removed {name}")
        chained = repo / "hooks" / (name + CHAINED_SUFFIX)
        if layout == "plain" and chained.exists() and not target.exists():
            chained.replace(target)
            notes.append(f"restored the previous {name}")
    if notes and git(["config", "--get", "receive.fsckObjects"], repo, check=False) == "true":
        # they protect the repository with or without spacehooks; removing them is a choice
        notes.append("kept git's checks of received objects (git config --unset receive.fsckObjects "
                     "and --remove-section receive.fsck remove them)")
    return notes


def _each_repo(paths: list[Path], layout: str, action: Callable, echo: Callable) -> None:
    repos = [repo for path in paths for repo in find_bare_repos(path)]
    if not repos:
        raise SpaceError(f"no bare repository found under {', '.join(map(str, paths))}",
                         hint="give the path of a bare repository (created with git init --bare) or a folder holding them")
    for repo in repos:
        chosen = detect_layout(repo) if layout == "auto" else layout
        notes = action(repo, chosen)
        echo(f"{repo}: {', '.join(notes) if notes else 'unchanged'} ({chosen} layout)")


def install_paths(settings, paths: list[Path], layout: str, echo: Callable = print) -> None:
    if layout == "gitolite" or (layout == "auto" and any(_gitolite_home(p) for p in paths)):
        from spacehooks import install_gitolite
        return install_gitolite.install(settings, paths, echo)
    _each_repo(paths, layout, lambda repo, chosen: install_repo(settings, repo, chosen), echo)


def uninstall_paths(settings, paths: list[Path], layout: str, echo: Callable = print) -> None:
    if layout == "gitolite" or (layout == "auto" and any(_gitolite_home(p) for p in paths)):
        from spacehooks import install_gitolite
        return install_gitolite.uninstall(settings, paths, echo)
    _each_repo(paths, layout, uninstall_repo, echo)


def _gitolite_home(path: Path) -> bool:
    return (path / ".gitolite.rc").is_file()


def write_git_template(settings: config_mod.Settings, folder: Path) -> list[str]:
    """A git template folder (init.templateDir): `git init` copies its hooks and config, so
    new repositories get our hooks and push options without running install again."""
    notes = [f"installed {name}" for name in HOOK_NAMES
             if _write(folder / "hooks" / name, render(name, settings))]
    config = ["config", "--file", str(folder / "config")]
    set_config(lambda args: git(config + args, check=False), lambda args: git(config + args), notes)
    return notes


def create_repo(settings: config_mod.Settings, space: str, echo: Callable = print) -> Path:
    """A new bare repository for OWNER/NAME under repo_root, hooks installed, owned like the root."""
    owner, _, name = space.partition("/")
    name = name.removesuffix(".git")
    if not (_NAME.fullmatch(owner) and _NAME.fullmatch(name)):
        raise SpaceError(f"cannot create {space!r}: give OWNER/NAME, each of letters, digits, . _ - "
                         "and starting with a letter or digit",
                         hint="for example: spacehooks create alice/demo")
    root = Path(settings["repo_root"])
    if not root.is_dir():
        raise SpaceError(f"repo_root {root} does not exist",
                         hint="create it (contrib/setup.sh does) or set repo_root in the config")
    repo = root / owner / f"{name}.git"
    if repo.exists():
        raise SpaceError(f"{repo} already exists",
                         hint=f"push to it, or reinstall its hooks with: spacehooks install {repo}")
    from spacehooks import addresses  # here: only create needs the store
    holder = addresses.taken_by(settings, f"{owner}/{name}", creating=True)
    if holder is not None:
        raise SpaceError(f"cannot create {owner}/{name}: its address {addresses.host(settings, f'{owner}/{name}')} "
                         f"belongs to {holder}", hint=f"{addresses.SHARED}; choose another name")
    made = [p for p in (root / owner, repo) if not p.exists()]
    git(["init", "--quiet", "--bare", "--initial-branch=main", str(repo)])
    install_repo(settings, repo, "plain")
    # pushes run as the account that owns repo_root (the git account): it must own the repo
    stat = root.stat()
    if os.geteuid() == 0 and stat.st_uid != 0:
        for top in made:
            os.chown(top, stat.st_uid, stat.st_gid)
            for folder, dirs, files in os.walk(top):
                for entry in dirs + files:
                    os.lchown(os.path.join(folder, entry), stat.st_uid, stat.st_gid)
    import pwd
    import socket
    try:
        user = pwd.getpwuid(stat.st_uid).pw_name
    except KeyError:
        user = str(stat.st_uid)
    echo(f"created {repo} (owner {user}, hooks installed)")
    # HEAD:main, not main: it works whatever the pusher's local branch is called
    if stat.st_uid == 0:  # no git account: pushes run the hooks as whoever pushes on this machine
        echo(f"push to it:  git push {repo} HEAD:main")
    else:
        echo(f"push to it:  git push {user}@{socket.getfqdn()}:{repo} HEAD:main")
        echo(f"  (from this server too: git push {user}@localhost:{repo} HEAD:main, with your key in "
             f"~{user}/.ssh/authorized_keys)")
    return repo
