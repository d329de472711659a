"""`spacehooks doctor`: check what builds and runs need, with the fix for each problem."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from spacehooks import engine, netfence, trust
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError
from spacehooks.results import Check, DoctorReport


def bad_config(exc: SpaceError) -> DoctorReport:
    return DoctorReport([Check(False, f"configuration: {exc.message}", exc.hint or "correct the file")],
                        note="fix the configuration first: the other checks need it")


def doctor(settings, progress: Callable[[Check], None] = lambda check: None) -> DoctorReport:
    """Check what builds and runs need, each problem with its fix; `progress` hears of each
    check as it is made (some take seconds)."""
    report = DoctorReport()

    def check(ok: bool, good: str, bad: str, fix: str) -> None:
        report.checks.append(Check(True, good) if ok else Check(False, bad, fix))
        progress(report.checks[-1])

    where = settings.path or "(no file: defaults)"
    check(True, f"configuration {where} is valid", "", "")
    _check_store(settings, check)
    _check_repositories(settings, check)
    _check_addresses(settings, check)
    hook_account = _hook_interpreter(settings)
    if hook_account is not None:
        check(*hook_account)
    url = settings["podman_url"]
    eng = engine.get(settings)
    try:
        eng.ping()
        facts = eng.info()
    except SpaceError as exc:
        check(False, "", f"Podman service is down: {exc.message}", exc.hint or "")
        return report
    check(True, f"Podman service answers at {url}", "", "")
    runtime, cgroups = facts.runtime, facts.cgroup_version
    check(runtime == "runc" or cgroups == "v2", f"runtime {runtime} on cgroups {cgroups}",
          f"runtime {runtime} on cgroups {cgroups}: crun refuses cgroup v1 hybrid hosts",
          'set `[engine] runtime = "runc"` in the service\'s containers.conf (contrib/podman/containers.conf)')
    controllers = facts.cgroup_controllers
    limits_ok = controllers is None or {"memory", "pids", "cpu"} <= set(controllers)
    check(limits_ok, "cgroup controllers memory, cpu, pids available",
          f"cgroup controllers {None if controllers is None else list(controllers)} lack memory, cpu or pids: limits cannot apply",
          "enable the memory, cpu and pids controllers (cgroup_enable=memory on the kernel command line)")
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    check(hard == resource.RLIM_INFINITY or settings["run.nofile"] <= hard,
          f"run.nofile {settings['run.nofile']} fits the host's hard limit {hard}",
          f"run.nofile {settings['run.nofile']} is above the host's hard open-file limit {hard}: containers will not start",
          f"set run.nofile to {hard} or less")
    for version, image in settings["python_versions"].items():
        check(eng.image_exists(image), f"base image for python {version}: {image}",
              f"base image {image} for python {version} is missing",
              "run `spacehooks base-image build`" if image.startswith("localhost/") else f"pull {image}")
    ca = trust.bundle(settings)
    check(not ca or os.access(ca, os.R_OK), f"build.ca_bundle {ca or '(none)'}", f"build.ca_bundle {ca} is not readable",
          "point build.ca_bundle at a readable PEM file (e.g. /etc/ssl/certs/ca-certificates.crt)")
    image = next(iter(settings["python_versions"].values()), None)
    if image and eng.image_exists(image) and (not ca or os.access(ca, os.R_OK)):
        check(*_index_reachable(settings, image, ca))
    fence = netfence.problem(settings)
    check(fence is None, "network fence (nftables) and user namespace ids (`containers` in /etc/subuid, /etc/subgid)",
          fence or "", "apt-get install nftables iptables; run as root; contrib/podman/subids.sh")
    home = Path(settings.home)
    check(home.is_dir() and os.access(home, os.W_OK), f"SPACEHOOKS_HOME {home} is writable",
          f"SPACEHOOKS_HOME {home} is missing or not writable", f"mkdir -p {home} and give it to the spacehooks user")
    if home.is_dir():
        info = home.stat()
        check(info.st_uid == os.geteuid() and not info.st_mode & 0o022,
              f"SPACEHOOKS_HOME {home} is writable by its owner only",
              f"SPACEHOOKS_HOME {home} (uid {info.st_uid}, mode {info.st_mode & 0o7777:o}) can be written by others:"
              " the git account could replace the state store or the secrets",
              f"chown root: {home} && chmod go-w {home} (contrib/setup.sh does)")
    group = settings["home_group"]
    if group:
        import grp
        try:
            grp.getgrnam(group)
            found = True
        except KeyError:
            found = False
        check(found, f"home_group {group} exists (the git account shares SPACEHOOKS_HOME through it)",
              f"home_group {group} does not exist: post-receive, run by the git account, cannot record builds",
              f"groupadd --system {group} && usermod -a -G {group} GIT_ACCOUNT (or set home_group)")
    return report


def _check_store(settings, check) -> None:
    path = settings.db_path
    try:
        problems = state_mod.integrity_problems(settings)
    except SpaceError as exc:
        check(False, "", exc.message, exc.hint or "")
        return
    check(not problems, f"state store {path} passes SQLite's quick_check",
          f"state store {path} is damaged: {'; '.join(problems[:3])}", state_mod.RECOVERY_HINT)


def _check_repositories(settings, check) -> None:
    """Every repository under repo_root has git's checks of received objects, as its owner's
    receive-pack sees them (its own config and the owner's global one)."""
    import pwd

    from spacehooks.install import FSCK_CONFIG, find_bare_repos, missing_config
    from spacehooks.proc import clean_env, git
    root = Path(settings["repo_root"])
    if not root.is_dir():
        return
    lacking = []
    repos = find_bare_repos(root)
    for repo in repos:
        try:
            home = pwd.getpwuid(repo.stat().st_uid).pw_dir
        except KeyError:
            home = "/nonexistent"
        env = clean_env({"HOME": home})
        if set(missing_config(lambda args: git(["config", *args], repo, check=False, env=env))) & set(FSCK_CONFIG):
            lacking.append(repo)
    shown = ", ".join(str(r) for r in lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
    check(not lacking, f"git's checks of received objects on all {len(repos)} repositories under {root}",
          f"{len(lacking)} of {len(repos)} repositories under {root} lack git's checks of received objects "
          f"(receive.fsckObjects, receive.fsck.*): {shown}",
          f"spacehooks install {root}")


def _check_addresses(settings, check) -> None:
    """Spaces made before addresses were checked may share one; the oldest is served there."""
    from spacehooks import addresses, state
    ages = state.space_ages(settings) or {}
    by_label: dict[str, list] = {}
    for space_id, made in sorted(ages.items(), key=lambda item: (item[1], item[0])):
        by_label.setdefault(addresses.host_label(space_id), []).append(space_id)
    for label, ids in sorted(by_label.items()):
        if len(ids) > 1:
            check(False, "", f"{', '.join(ids[1:])} {'shares' if len(ids) == 2 else 'share'} the address {addresses.host(settings, ids[0])} with "
                             f"{ids[0]}, which is older and served there",
                  f"spacehooks delete {ids[1]} and push it again under another name" if len(ids) == 2 else
                  "spacehooks delete each newer one and push it again under another name")


def _hook_interpreter(settings) -> tuple | None:
    """(ok, good, bad, fix) for: the account owning repo_root (it runs the hooks at push) can
    run this interpreter, the one `spacehooks install` writes into the hooks. A venv made from
    a Python under /root (pyenv) links into a folder only root may enter."""
    import pwd
    import sys
    from spacehooks import proc
    root = Path(settings["repo_root"])
    if os.geteuid() != 0 or not root.is_dir() or root.stat().st_uid == 0:
        return None  # root's own pushes, or nobody to check as
    try:
        user = pwd.getpwuid(root.stat().st_uid).pw_name
    except KeyError:
        return None
    python = sys.executable
    result = proc.run(["runuser", "-u", user, "--", python, "-c", "import spacehooks"], check=False, timeout=60,
                      cwd="/")
    why = (result.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return (result.returncode == 0,
            f"the hook account {user} (owner of {root}) runs the hooks' interpreter {python}",
            f"the hook account {user} (owner of {root}) cannot run the hooks' interpreter {python}: {why}; "
            "every push fails",
            f"make the venv from the system Python, readable by {user}: /usr/bin/python3 -m venv VENV "
            f"(contrib/setup.sh does), then spacehooks install {root}")


def _index_reachable(settings, image: str, ca: str | None) -> tuple[bool, str, str, str]:
    """A container of the base image, given the CA as a build step is, fetches pip's index page."""
    index = (settings["build.pip_index_url"] or "https://pypi.org/simple/").rstrip("/") + "/pip/"
    code = f"import urllib.request; urllib.request.urlopen({index!r}, timeout=20)"
    files = (engine.FileMount(target=trust.RUN_PATH, source=os.path.realpath(ca)),) if ca else ()
    ok, output = engine.get(settings).probe(image, ["python3", "-c", code], files=files,
                                            env={"SSL_CERT_FILE": trust.RUN_PATH} if ca else {})
    last = (output.strip().splitlines() or ["no output"])[-1][:300]
    if "CERTIFICATE_VERIFY_FAILED" in output:
        fix = ("set build.ca_bundle to the CA bundle that holds your TLS-inspecting proxy's certificate "
               f"(`auto`: the host's {trust.HOST_BUNDLE}), and run.ca_bundle for the Spaces themselves")
    else:
        fix = ("let the server reach the index (proxy, firewall, DNS), or set build.pip_index_url to a mirror it reaches "
               "(on a private address: add it to network.egress_allow)")
    return (ok, f"a build container reaches the package index {index}" + (f" trusting {ca}" if ca else ""),
            f"a build container cannot reach the package index {index}: {last}", fix)

