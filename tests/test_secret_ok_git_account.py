"""`git push -o secret-ok=FP` as the git account (issue 16 bug): pre-receive runs as that
account, which cannot write the state folder; the confirmation travels in the push record
and the server writes the audit line, after its own scan of the commit."""
import json
import os
import stat

from helpers import git, write_files
from test_engine_state_permissions import STATIC_README, USER, site  # noqa: F401 - site is a fixture

# drawn at random for this test, never issued: the structure of a real token
KEY = "hf_" + "Qm7Zt2XvK9pLr4WbN8sYc3DjH6fGa1UeT5"


def _remote(result):
    return [line.removeprefix("remote: ").rstrip() for line in result.stdout.splitlines() if line.startswith("remote: ")]


def _commit(site, files, message):
    """A commit the git account makes in its own working copy."""
    import servers
    write_files(site.work, files)
    servers.chown_tree(site.work, site.user)
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        assert site.as_git("git", "-C", site.work, *args).returncode == 0
    return git("rev-parse", "HEAD", cwd=site.work).stdout.strip()


def _fingerprint(site):
    refused = site.push()
    assert refused.returncode != 0, refused.stdout
    return next(line for line in _remote(refused) if "secret-ok=" in line).rsplit("secret-ok=", 1)[1]


def test_the_git_accounts_confirmation_is_logged_by_the_server(site):
    from spacehooks.queue import intake
    log = site.home / "secret-ok.log"
    head = _commit(site, {"app.js": f"const TOKEN = '{KEY}';\n"}, "key")
    fp = _fingerprint(site)
    pushed = site.push(f"secret-ok={fp}")
    # before the fix: " !     Sorry, your push was rejected: secret-ok could not be recorded in …/secret-ok.log
    # (Permission denied); ask the administrator"
    assert pushed.returncode == 0, pushed.stdout
    assert (f" !     warning: app.js:1: a Hugging Face token (hf_Qm7…) accepted as no secret: secret-ok={fp} "
            f"given by {USER}") in _remote(pushed), pushed.stdout
    assert not log.exists()  # the server has not taken the record in yet
    st = site.state()
    try:
        assert intake.take_all(site.settings, st) == 1
        assert [b["commit"] for b in st.builds("alice/demo")] == [head]
    finally:
        st.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [{k: r[k] for k in ("space", "pusher", "fingerprint", "path", "line", "kind")} for r in records] == [
        {"space": "alice/demo", "pusher": USER, "fingerprint": fp, "path": "app.js", "line": 1,
         "kind": "a Hugging Face token"}]
    assert KEY not in log.read_text()
    info = log.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o640)
    # the git account can neither forge nor erase audit lines
    for attack in (["sh", "-c", f"echo forged >> {log}"], ["rm", "-f", log], ["mv", log, site.home / "x"]):
        assert site.as_git(*attack).returncode != 0, attack
    assert len(log.read_text().splitlines()) == 1


def test_a_forged_record_logs_only_what_the_servers_own_scan_finds(site):
    from spacehooks import spool
    from spacehooks.queue import intake
    clean = git("rev-parse", "HEAD", cwd=site.work).stdout.strip()
    assert site.push().returncode == 0
    st = site.state()
    try:
        assert intake.take_all(site.settings, st) == 1

        def rec(**kw):
            return {"space": "alice/demo", "repo": str(site.bare), "commit": clean, "pusher": "mallory",
                    "options": {}, **kw}
        # a fingerprint the commit holds no finding for: taken in as any push, nothing logged
        no_finding = site.drop(rec(secret_ok=["0123456789ab"]))
        malformed = site.drop(rec(secret_ok=["../../x"]))
        too_many = site.drop(rec(secret_ok=["0123456789ab"] * 65))
        assert intake.take_all(site.settings, st) == 3
    finally:
        st.close()
    assert spool.read_answer(site.home, no_finding)["state"] == "queued"
    for name in (malformed, too_many):
        assert spool.read_answer(site.home, name) == {
            "state": "refused", "error": "secret_ok must list at most 64 fingerprints of 12 hex digits"}
    assert not (site.home / "secret-ok.log").exists()


def test_a_confirmation_the_server_cannot_log_is_not_built(site):
    from spacehooks import spool
    from spacehooks.queue import intake
    _commit(site, {"app.js": f"const TOKEN = '{KEY}';\n"}, "key")
    fp = _fingerprint(site)
    assert site.push(f"secret-ok={fp}").returncode == 0
    os.mkdir(site.home / "secret-ok.log")  # as if the log could not be written (a full disk, say)
    [name] = [n.removesuffix(".push") for n in os.listdir(site.home / "incoming")]
    st = site.state()
    try:
        assert intake.take_all(site.settings, st) == 1
        assert st.builds("alice/demo") == []
    finally:
        st.close()
    assert spool.read_answer(site.home, name) == {
        "state": "refused", "error": f"secret-ok could not be recorded in {site.home}/secret-ok.log "
                                     "(Is a directory); ask the administrator"}
