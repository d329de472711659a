"""`spacehooks duplicate FROM TO`: a new Space from an existing one, as the Hub's "Duplicate
this Space". The copy gets the repository with its whole history (a new bare repository,
hooks installed, through install.create_repo), the variables, and one new commit on the deploy
branch setting `duplicated_from: FROM` in the README's YAML. That commit arrives by a real push
into the new repository, so the gate checks it and post-receive queues its build like any
push. Secrets are never copied: the result names those the new owner must set. `private`
records the copy as private before that push (like `create --private`), so its first build is
never public. Prints nothing: the result (results.Duplicated) carries the lines to show
(clistorage.py prints them, the Hub API answers).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from spacehooks import proc
from spacehooks.access import accounts
from spacehooks.admin import install
from spacehooks.run import gpu
from spacehooks.admin import storage as storage_admin
from spacehooks.run import storage
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.results import Duplicated

_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*$", re.S | re.M)
IDENTITY = ["-c", "user.name=spacehooks", "-c", "user.email=spacehooks@localhost"]


def readme_with_origin(text: str, origin: str) -> str:
    """The README with `duplicated_from: origin` in its YAML header (replacing one already there)."""
    match = _FRONT.match(text)
    if not match:
        return f"---\nduplicated_from: {origin}\n---\n{text}"
    body = [line for line in match.group(1).splitlines(keepends=True) if not line.startswith("duplicated_from:")]
    if body and not body[-1].endswith("\n"):
        body[-1] += "\n"
    return text[:match.start(1)] + "".join(body) + f"duplicated_from: {origin}\n" + text[match.end(1):]


def duplicate(settings, from_id: str, to_id: str, *, private: bool = False, hardware: str | None = None,
              storage_tier: str | None = None, secrets: dict | None = None, variables: dict | None = None) -> Duplicated:
    """Copy Space `from_id` to a new Space `to_id`; returns what was done and what is left to the
    new owner. `secrets` and `variables` (the Hub API's duplicate_space) are the copy's own, set
    before its first build. Nothing is made when an argument is wrong (checked before the
    repository exists)."""
    own_secrets, own_variables = dict(secrets or {}), dict(variables or {})
    for key in [*own_secrets, *own_variables]:
        if not state_mod.SECRET_KEY.fullmatch(str(key)):
            raise SpaceError(f"{key!r} is not a valid name", hint="use letters, digits and _, not starting with a digit")
    st = state_mod.open(settings)
    try:
        source = st.get_space(from_id)
        if source is None:
            raise SpaceError(f"no Space {from_id!r}", hint="see `spacehooks spaces`")
        if st.get_space(to_id) is not None:
            raise SpaceError(f"{to_id} exists already", hint="choose another name for the copy")
        variables = {**st.variables(from_id), **own_variables}
    finally:
        st.close()
    if hardware:
        gpu.flavor(settings, hardware)
    if storage_tier:
        storage.tier_size(settings, storage_tier)
    secret_names = sorted(set(state_mod.read_secrets(settings.home, from_id)) - set(own_secrets))
    branch = settings["deploy_branch"]
    output: list[str] = []  # what creating the repository and the push said
    repo = install.create_repo(settings, to_id, echo=output.append)
    work = Path(tempfile.mkdtemp(prefix="spacehooks-duplicate-"))
    try:
        # the variables are there before the push queues the copy's first build
        st = state_mod.open(settings)
        try:
            st.ensure_space(to_id, repo, hardware=hardware or source.get("hardware") or settings["run.default_hardware"])
            for key, value in variables.items():
                st.set_variable(to_id, key, value)
            for key, value in own_secrets.items():
                state_mod.write_secret(settings.home, to_id, key, str(value))
            if private:  # before the push: the copy's first build is never public
                st.set_private(to_id, True)
                accounts.write_access_file(settings, st)
        finally:
            st.close()
        commit = _copy_history(settings, Path(source["repo_path"]), repo, work, from_id, branch, output.append)
    except BaseException:
        shutil.rmtree(repo, ignore_errors=True)  # a copy the gate refused leaves nothing behind
        _forget(settings, to_id)
        for key in own_secrets:
            state_mod.delete_secret(settings.home, to_id, key)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _own_like_root(settings, repo)
    if storage_tier:
        storage_admin.set_tier(settings, to_id, storage_tier)
    return Duplicated(from_id, to_id, str(repo), commit, sorted(variables), secret_names, hardware, storage_tier,
                      private, output)


def _copy_history(settings, source: Path, repo: Path, work: Path, from_id: str, branch: str, echo) -> str:
    clone = work / "copy"
    proc.git(["clone", "--quiet", "--no-checkout", str(source), str(clone)])
    refs = proc.git(["for-each-ref", "--format=%(refname)", "refs/remotes/origin/"], git_dir=clone / ".git")
    if f"refs/remotes/origin/{branch}" not in refs.split():
        raise SpaceError(f"{from_id} has no {branch} branch to copy", hint="push to it first")
    git = ["git", "-C", str(clone), *IDENTITY]
    proc.run([*git, "checkout", "--quiet", "-B", branch, f"origin/{branch}"], env=proc.clean_env())
    readme = clone / "README.md"
    if readme.is_symlink():
        raise SpaceError(f"{from_id}: README.md is a symbolic link; the copy cannot set duplicated_from in it")
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    readme.write_text(readme_with_origin(text, from_id), encoding="utf-8")
    proc.run([*git, "add", "README.md"], env=proc.clean_env())
    proc.run([*git, "commit", "--quiet", "-m", f"Duplicate from {from_id}"], env=proc.clean_env())
    commit = proc.git(["rev-parse", "HEAD"], git_dir=clone / ".git")
    heads = [f"refs/remotes/origin/{r.rpartition('/')[2]}:refs/heads/{r.rpartition('/')[2]}"
             for r in refs.split() if r.startswith("refs/remotes/origin/") and not r.endswith(("/HEAD", f"/{branch}"))]
    # a real push: the new repository's pre-receive (the gate) checks it, post-receive queues it
    pushed = proc.run([*git, "push", "--quiet", str(repo), f"{branch}:refs/heads/{branch}", *heads, "--tags"],
                      env=proc.clean_env(), check=False)
    output = (pushed.stdout + pushed.stderr).decode(errors="replace")
    for line in output.splitlines():
        echo(line)
    if pushed.returncode != 0:
        raise SpaceError(f"the copy of {from_id} was refused by the gate; nothing was created",
                         hint="see the push output above; fix the source Space and duplicate again")
    return commit


def _forget(settings, to_id: str) -> None:
    st = state_mod.open(settings)
    try:
        if st.get_space(to_id) is not None:
            st.delete_space(to_id)
            accounts.write_access_file(settings, st)  # it may have been recorded as private
    finally:
        st.close()


def _own_like_root(settings, repo: Path) -> None:
    """The push ran as root: hand what it wrote to the account that owns repo_root (pushes run as it)."""
    stat = Path(settings["repo_root"]).stat()
    if os.geteuid() != 0 or stat.st_uid == 0:
        return
    for folder, dirs, files in os.walk(repo):
        os.lchown(folder, stat.st_uid, stat.st_gid)
        for entry in dirs + files:
            os.lchown(os.path.join(folder, entry), stat.st_uid, stat.st_gid)
