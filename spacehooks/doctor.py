"""`spacehooks doctor`: check what builds and runs need, and print the fix for each problem."""
from __future__ import annotations

import os
from pathlib import Path

from spacehooks import podman
from spacehooks.admin import Echo
from spacehooks.errors import SpaceError


def doctor(settings, echo: Echo) -> bool:
    """Check what builds and runs need; print each problem with its fix. True when all is well."""
    problems = 0

    def check(ok: bool, good: str, bad: str, fix: str) -> None:
        nonlocal problems
        echo(f"ok       {good}" if ok else f"PROBLEM  {bad}\n  fix: {fix}")
        problems += not ok

    hook_account = _hook_interpreter(settings)
    if hook_account is not None:
        check(*hook_account)
    url = settings["podman_url"]
    try:
        podman.ping(url)
        data = podman.info(settings)
    except SpaceError as exc:
        check(False, "", exc.message, exc.hint or "")
        return False
    check(True, f"Podman service answers at {url}", "", "")
    host = data.get("host", {})
    runtime = (host.get("ociRuntime") or {}).get("name", "?")
    cgroups = host.get("cgroupVersion", "?")
    check(runtime == "runc" or cgroups == "v2", f"runtime {runtime} on cgroups {cgroups}",
          f"runtime {runtime} on cgroups {cgroups}: crun refuses cgroup v1 hybrid hosts",
          'set `[engine] runtime = "runc"` in the service\'s containers.conf (contrib/podman/containers.conf)')
    limits_ok = host.get("cgroupControllers") is None or {"memory", "pids", "cpu"} <= set(host.get("cgroupControllers") or [])
    check(limits_ok, "cgroup controllers memory, cpu, pids available",
          f"cgroup controllers {host.get('cgroupControllers')} lack memory, cpu or pids: limits cannot apply",
          "enable the memory, cpu and pids controllers (cgroup_enable=memory on the kernel command line)")
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    check(hard == resource.RLIM_INFINITY or settings["run.nofile"] <= hard,
          f"run.nofile {settings['run.nofile']} fits the host's hard limit {hard}",
          f"run.nofile {settings['run.nofile']} is above the host's hard open-file limit {hard}: containers will not start",
          f"set run.nofile to {hard} or less")
    client = podman.client(settings)
    for version, image in settings["python_versions"].items():
        check(client.images.exists(image), f"base image for python {version}: {image}",
              f"base image {image} for python {version} is missing",
              "run `spacehooks base-image build`" if image.startswith("localhost/") else f"pull {image}")
    ca = settings["build.ca_bundle"]
    check(not ca or os.access(ca, os.R_OK), f"build.ca_bundle {ca or '(none)'}", f"build.ca_bundle {ca} is not readable",
          "point build.ca_bundle at a readable PEM file (e.g. /etc/ssl/certs/ca-certificates.crt)")
    home = Path(settings.home)
    check(home.is_dir() and os.access(home, os.W_OK), f"SPACEHOOKS_HOME {home} is writable",
          f"SPACEHOOKS_HOME {home} is missing or not writable", f"mkdir -p {home} and give it to the spacehooks user")
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
    echo("all checks passed" if not problems else f"{problems} problem(s) found")
    return problems == 0


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
