"""Users, organisations, tokens and the owner rules (issue 13, item 1): the identity core."""
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from spacehooks import config, state
from spacehooks.access import accounts
from spacehooks.errors import SpaceError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def site(tmp_path):
    settings = config.load(tmp_path / "none.yaml", tmp_path / "home")
    st = state.open(settings)
    accounts.add_user(settings, st, "alice")
    accounts.add_user(settings, st, "bob")
    accounts.add_user(settings, st, "root", admin=True)
    accounts.add_org(settings, st, "acme")
    accounts.set_member(settings, st, "acme", "bob", True)
    yield settings, st
    st.close()


def test_a_token_is_shown_once_stored_hashed_and_identifies_its_user(site):
    settings, st = site
    token_id, token = accounts.create_token(st, "alice", "write", name="laptop")
    assert token.startswith(f"shk_{token_id}_") and len(token) == 55
    row = st.token(token_id)
    assert token not in json.dumps(row) and token.split("_", 2)[2] not in json.dumps(row)
    dump = b"".join(p.read_bytes() for p in Path(settings.home).glob("state.db*"))
    assert token.encode() not in dump
    who = accounts.identify(st, token)
    assert (who.name, who.scope, who.credential, who.admin) == ("alice", "write", f"token:{token_id}", False)
    assert accounts.identify(st, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert accounts.identify(st, f"shk_{'0' * 10}_{'A' * 40}") is None
    assert accounts.identify(st, "hf_" + "x" * 34) is None


def test_revoked_expired_and_removed_users_tokens_fail(site):
    settings, st = site
    tid, token = accounts.create_token(st, "alice", "read")
    _, short = accounts.create_token(st, "alice", "read", expires_in=60)
    assert accounts.identify(st, short) is not None
    assert accounts.identify(st, short, now=10 ** 12) is None
    assert st.revoke_token(tid) and accounts.identify(st, token) is None
    _, bobs = accounts.create_token(st, "bob", "write")
    accounts.remove_account(settings, st, "bob")
    assert accounts.identify(st, bobs) is None


def test_owner_rules(site):
    settings, st = site
    alice = accounts.identity_of(st, "alice")
    bob = accounts.identity_of(st, "bob")
    root = accounts.identity_of(st, "root")
    bob_read = accounts.identity_of(st, "bob", scope="read")
    public, private = {"id": "acme/app", "private": 0}, {"id": "acme/secret", "private": 1}
    assert [accounts.may(x, accounts.READ, public) for x in (None, alice, bob)] == [True, True, True]
    assert [accounts.may(x, accounts.READ, private) for x in (None, alice, bob, bob_read, root)] == \
        [False, False, True, True, True]
    assert [accounts.may(x, accounts.LOGS, public) for x in (None, alice, bob, root)] == [False, False, True, True]
    assert [accounts.may(x, accounts.WRITE, public) for x in (None, alice, bob, bob_read, root)] == \
        [False, False, True, False, True]
    assert accounts.may(alice, accounts.WRITE, "alice/new") and not accounts.may(alice, accounts.WRITE, "bob/new")


@pytest.mark.parametrize("name", ["-x", "a/b", "a b", "", "é", "x" * 97, "..", "a\nb"])
def test_names_are_checked_where_they_enter(site, name):
    settings, st = site
    with pytest.raises(SpaceError) as err:
        accounts.add_user(settings, st, name)
    assert str(err.value).startswith(f"user name {name!r} is not valid")
    assert st.account(name) is None


def test_users_and_orgs_share_one_namespace(site):
    settings, st = site
    with pytest.raises(SpaceError, match="acme exists already"):
        accounts.add_user(settings, st, "acme")
    with pytest.raises(SpaceError, match="there is no organisation alice"):
        accounts.set_member(settings, st, "alice", "bob", True)


def test_the_access_file_has_names_only_and_is_not_world_readable(site):
    settings, st = site
    accounts.create_token(st, "alice", "write")
    path = Path(settings.home) / accounts.ACCESS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    data = json.loads(path.read_text())
    assert data["users"]["bob"] == {"admin": False, "orgs": ["acme"]} and data["users"]["root"]["admin"]
    assert "shk_" not in path.read_text()


def test_a_v3_store_is_migrated_to_v4_and_keeps_its_spaces(tmp_path):
    settings = config.load(tmp_path / "none.yaml", tmp_path / "home")
    (tmp_path / "home").mkdir(mode=0o700)
    conn = sqlite3.connect(settings.db_path)
    conn.executescript((FIXTURES / "state_schema_v3.sql").read_text())
    conn.execute("INSERT INTO spaces (id, repo_path, created_at, updated_at) VALUES ('alice/a', '/r', 1, 1)")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    st = state.open(settings)
    assert state.schema_version(st) == state.SCHEMA_VERSION  # 4 and the migrations after it
    assert st.get_space("alice/a")["private"] == 0 and st.private_spaces() == []
    assert st.set_private("alice/a", True) and st.private_spaces() == ["alice/a"]
    st.close()
    # the previous release's statements still work on the migrated file (rollback)
    conn = sqlite3.connect(settings.db_path)
    conn.execute("INSERT OR IGNORE INTO spaces (id, repo_path, hardware, sleep_seconds, created_at, updated_at)"
                 " VALUES ('bob/b', '/r2', NULL, NULL, 1, 1)")
    conn.commit()
    assert [r[0] for r in conn.execute("SELECT id FROM spaces ORDER BY id")] == ["alice/a", "bob/b"]
    conn.close()


def test_create_private_records_the_space_as_private_before_any_push(server):
    import subprocess
    from conftest import VENV_BIN
    server.configure()
    run = subprocess.run([str(VENV_BIN / "spacehooks"), "create", "--private", "acme/tool"], env=server.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert run.returncode == 0, run.stdout
    assert run.stdout.splitlines()[-1] == "acme/tool is private: only its owner's members see it"
    settings = config.load(server.config, server.home)
    st = state.open(settings)
    try:
        space = st.get_space("acme/tool")
        assert (space["private"], space["stage"], space["commit"]) == (1, "NO_APP_FILE", None)
    finally:
        st.close()
    assert json.loads((server.home / accounts.ACCESS_FILE).read_text())["private"] == ["acme/tool"]


def test_a_rebuilt_store_keeps_private_spaces_private_and_its_users(server):
    import subprocess
    from conftest import VENV_BIN

    def cli(*args):
        run = subprocess.run([str(VENV_BIN / "spacehooks"), *args], env=server.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=120)
        assert run.returncode == 0, run.stdout
        return run.stdout
    server.configure()
    cli("create", "--private", "acme/tool")
    cli("create", "acme/open")
    cli("users", "add", "alice")
    cli("orgs", "add", "acme")
    cli("orgs", "member", "add", "acme", "alice")
    cli("tokens", "create", "alice")
    out = cli("state", "rebuild", "--force")
    assert ("restored 1 users, 1 organisations and 1 private Spaces from access.json; tokens must be created again"
            in out)
    st = state.open(config.load(server.config, server.home))
    try:
        assert st.private_spaces() == ["acme/tool"]
        assert st.orgs_of("alice") == ["acme"] and st.tokens() == []
    finally:
        st.close()
