"""Commands for Space authors over SSH (`ssh git@host restart alice/demo`, as Dokku): the
server's side. The SSH gate (running as the git account) hands the words to the server over
a Unix socket; the server decides who asks WITHOUT believing anything the git account says.

Who asks: the socket's peer process (SO_PEERCRED, from the kernel) must descend from the
per-connection sshd process that runs as root; that process's TCP connection (read from
/proc as root) is looked up in sshd's own log (`ssh.auth_log`, a file only sshd writes), whose
last "Accepted publickey ... from ADDR port PORT ssh2: TYPE SHA256:..." line for that
connection names the key that logged in; the key's fingerprint maps to a user in the
server's own record (`users ssh-key add` writes it, root-only). authorized_keys and the
forced command line are writable or readable by the git account, so neither is trusted here.
"""
from __future__ import annotations

import json
import os
import re
import socket
import struct
from pathlib import Path

from spacehooks import stages
from spacehooks.access import accounts
from spacehooks.access.accounts import SSH_SOCKET as SOCKET
from spacehooks.errors import SpaceError

KEYS_FILE = "ssh-keys.json"
MAX_REQUEST = 256 * 1024
# whole lines only: sshd logs a client's login name as sent (spaces included) inside other
# lines, so a match in the middle of one could be forged; a syslog prefix is allowed, strictly
_ACCEPTED = re.compile(rb"^(?:\w{3} [ \d]\d [\d:]{8} \S+ sshd(?:-session)?\[\d+\]: )?"
                       rb"Accepted publickey for \S+ from (\S+) port (\d+) ssh2: \S+ (SHA256:[A-Za-z0-9+/=]+)\r?$", re.M)
SSHD_NAMES = ("sshd", "sshd-session")


class Unproven(Exception):
    """The request cannot be tied to an SSH login."""


# --- the server's record of keys ----------------------------------------------------------
def keys_record(home) -> dict:
    try:
        return json.loads((Path(home) / KEYS_FILE).read_text())
    except FileNotFoundError:
        return {}


def record_key(home, fingerprint: str, user: str) -> None:
    """fingerprint -> user, in a file only the server's account reads."""
    data = keys_record(home)
    data[fingerprint] = user
    path = Path(home) / KEYS_FILE
    tmp = path.with_name(f".{KEYS_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


# --- who is on the other end of the socket ------------------------------------------------
def peer_pid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def sshd_of(pid: int) -> int:
    """The nearest ancestor running as root; it must be sshd (the connection's own process)."""
    for _ in range(64):
        pid = _parent(pid)
        if pid <= 1:
            break
        if os.stat(f"/proc/{pid}").st_uid == 0:
            if Path(os.readlink(f"/proc/{pid}/exe")).name not in SSHD_NAMES:
                break
            return pid
    raise Unproven("this command did not come through an SSH login")


def _hex_address(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    address = socket.inet_ntop(socket.AF_INET6, words)
    return address.removeprefix("::ffff:") if address.startswith("::ffff:") and "." in address else address


def connection_of(pid: int) -> tuple[str, int]:
    """(client address, client port) of the TCP connection the sshd process holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
                address, port = fields[2].split(":")
                return _hex_address(address), int(port, 16)
    raise Unproven("the SSH connection of this command was not found")


def _tail(path: Path, size: int) -> bytes:
    """A file's last `size` bytes, read from there (a run log is as long as Space code makes it)."""
    with open(path, "rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - size))
        return fh.read()


def logged_key(log: Path, address: str, port: int, tail: int = 8 * 1024 * 1024) -> str:
    """The fingerprint of the key the last login from address:port used, from sshd's log."""
    try:
        data = _tail(log, tail)
    except OSError as exc:
        raise Unproven(f"sshd's log cannot be read ({exc.strerror})") from None
    found = None
    for match in _ACCEPTED.finditer(data):
        if match.group(1).decode() == address and int(match.group(2)) == port:
            found = match.group(3).decode()
    if found is None:
        raise Unproven("sshd's log does not name the key of this connection")
    return found


def who_asks(settings, conn: socket.socket) -> str:
    """The user whose key logged in on the connection this request came through."""
    if not settings["ssh.auth_log"]:
        raise Unproven("SSH commands are off on this server (setting ssh.auth_log)")
    sshd = sshd_of(peer_pid(conn))
    fingerprint = logged_key(Path(settings["ssh.auth_log"]), *connection_of(sshd))
    user = keys_record(settings.home).get(fingerprint)
    if user is None:
        raise Unproven("this key was not added with `spacehooks users ssh-key add`")
    return user


# --- the commands -------------------------------------------------------------------------
HELP = """Commands (ssh git@HOST COMMAND ...):
  spaces                         the Spaces you may see
  status OWNER/NAME              stage, hardware, commit, error
  logs OWNER/NAME [LINES]        the end of the run log (members)
  restart OWNER/NAME             restart (resume a paused Space)
  secrets list OWNER/NAME        secret names
  secrets set OWNER/NAME KEY     the value is read from standard input
  secrets unset OWNER/NAME KEY
  help                           this text
git push and git clone work on OWNER/NAME.git as before."""


def run(settings, user: str, args: list, stdin: str) -> tuple[int, str]:
    """(exit code, text) of one command as `user` (identity from the server's own store)."""
    from spacehooks.admin import spaces as admin
    from spacehooks import state as state_mod
    st = state_mod.open(settings)
    try:
        who = accounts.identity_of(st, user, "write", "key")
        if who is None:
            return 1, f"{user} is not a user of this server"
        if not args or args[0] == "help":
            return 0, HELP
        if args[0] == "spaces" and len(args) == 1:
            return 0, "\n".join(s["id"] for s in st.list_spaces() if accounts.may(who, accounts.READ, s))
        command = args[:2] if args[0] == "secrets" else args[:1]
        rest = args[len(command):]
        need = {"status": accounts.READ, "logs": accounts.LOGS, "restart": accounts.WRITE,
                "secrets list": accounts.LOGS, "secrets set": accounts.WRITE, "secrets unset": accounts.WRITE}
        name = " ".join(command)
        if name not in need or not rest:
            return 1, f"unknown command {' '.join(args)[:100]!r}; see `help`"
        space = st.get_space(accounts.check_space_id(rest[0]))
        if space is None or not accounts.may(who, accounts.READ, space):
            return 1, f"Space {rest[0]} not found"
        if not accounts.may(who, need[name], space):
            return 1, f"{user} may not {name} {space['id']}: it belongs to {space['id'].partition('/')[0]}"
        space_id = space["id"]
        if name == "status":
            return 0, (f"{space_id}: {space.get('stage')}  hardware {space.get('hardware') or '-'}  "
                       f"commit {(space.get('commit') or '-')[:12]}" + (f"\n  {space['error']}" if space.get("error") else ""))
        if name == "logs":
            lines = int(rest[1]) if len(rest) > 1 and rest[1].isdigit() else 100
            path = st.run_log_path(space_id)
            text = _tail(path, 4 * 1024 * 1024).decode(errors="replace") if path.exists() else ""
            return 0, "\n".join(text.splitlines()[-min(lines, 10000):])
        if name == "secrets list":
            return 0, "\n".join(admin.secret_list(settings, space_id))
        if name == "restart":
            paused = space.get("stage") in stages.HALTED
            result = admin.resume(settings, space_id) if paused else admin.restart(settings, space_id)
            accounts.audit(st, who, "restart", space_id, "ssh")
            return (1 if result.error else 0), f"{space_id}: {result.stage}" + (f" ({result.error})" if result.error else "")
        if len(rest) != 2:
            return 1, f"usage: secrets {command[1]} OWNER/NAME KEY" + (" (value on standard input)" if command[1] == "set" else "")
        if command[1] == "set":
            admin.secret_set(settings, space_id, rest[1], stdin.rstrip("\n"))
        else:
            admin.secret_delete(settings, space_id, rest[1])
        accounts.audit(st, who, f"secret-{command[1]}", space_id, rest[1])
        return 0, f"{space_id}: secret {rest[1]} {'set' if command[1] == 'set' else 'removed'}"
    except SpaceError as exc:
        return 1, exc.message
    finally:
        st.close()


def answer(settings, conn: socket.socket) -> None:
    """Read one request from the SSH gate and answer it (one JSON line each way)."""
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    try:
        request = json.loads(data.split(b"\n", 1)[0])
        args, stdin = [str(a) for a in request["args"]][:16], str(request.get("stdin", ""))[:65536]
        user = who_asks(settings, conn)
        # the gate names a user too (its forced command); a mismatch means a tampered key file
        if request.get("user") != user:
            code, text = 1, "this key belongs to another user than its authorized_keys line says; ask the admin"
        else:
            code, text = run(settings, user, args, stdin)
    except Unproven as exc:
        code, text = 1, str(exc)
    except OSError:  # a process of the chain gone, or /proc unreadable: nothing is proven
        code, text = 1, "this command could not be tied to an SSH login"
    except (ValueError, KeyError, TypeError):
        code, text = 1, "bad request"
    conn.sendall(json.dumps({"code": code, "text": text}).encode() + b"\n")


def listen(settings) -> socket.socket:
    """The socket in SPACEHOOKS_HOME the SSH gate connects to: 0660, the state folder's group
    (the git account's), so the git account may ask and nobody else may."""
    home = Path(settings.home)
    path = home / SOCKET
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chown(path, -1, home.stat().st_gid)
    os.chmod(path, 0o660)
    sock.listen(16)
    return sock


def serve(settings, sock: socket.socket) -> None:
    """Answer requests until the socket is closed, each on its own thread (a restart may take
    a while; another author's `status` does not wait for it)."""
    import threading

    def one(conn):
        with conn:
            conn.settimeout(600)
            try:
                answer(settings, conn)
            except OSError:
                pass
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=one, args=(conn,), daemon=True).start()

