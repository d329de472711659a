"""A Space's stages (the Hub's names), the declared moves between them, and `change`, the one
function that moves a Space from one stage to another.

Every move is a row of MOVES: the event that causes it, the stages it may start from, the stage
it leads to. `change` writes a stage only when a row allows the move for the event given;
anything else is a bug in spacehooks: refused (nothing written), logged with a crash log's path,
and raised as IllegalStageChange. Writing the same stage again is not a move (fields only).

A new stage (say, waiting for capacity) is a constant, a place in STAGES and its rows in MOVES;
tests/test_stages.py checks that every stage can be reached and left (or is final).

No SQL and no SQLite here: `change` reads and writes through the state store it is given, and
post-receive on the git account (follow.py) imports this module for the names alone.
"""
from __future__ import annotations

NO_APP_FILE = "NO_APP_FILE"
CONFIG_ERROR = "CONFIG_ERROR"
BUILDING = "BUILDING"
BUILD_ERROR = "BUILD_ERROR"
APP_STARTING = "APP_STARTING"
RUNNING = "RUNNING"
RUNNING_BUILDING = "RUNNING_BUILDING"
RUNNING_APP_STARTING = "RUNNING_APP_STARTING"
RUNTIME_ERROR = "RUNTIME_ERROR"
PAUSED = "PAUSED"
STOPPED = "STOPPED"
SLEEPING = "SLEEPING"
DELETING = "DELETING"
# not a Hub stage: built, but its flavor does not fit beside the running Spaces yet (capacity.py)
WAITING_CAPACITY = "WAITING_CAPACITY"

STAGES = (NO_APP_FILE, CONFIG_ERROR, BUILDING, BUILD_ERROR, APP_STARTING, RUNNING, RUNNING_BUILDING,
          RUNNING_APP_STARTING, RUNTIME_ERROR, PAUSED, STOPPED, SLEEPING, DELETING, WAITING_CAPACITY)
NEW = BUILDING  # a Space's first row (the store's column default)
# A container answers on the Space's port in these stages.
ANSWERING = (RUNNING, RUNNING_BUILDING, RUNNING_APP_STARTING)
# A container has been started in these (in APP_STARTING it may not answer yet).
STARTED = (*ANSWERING, APP_STARTING)
# Nothing serves, and the Space's error says why.
ERRORS = (NO_APP_FILE, CONFIG_ERROR, BUILD_ERROR, RUNTIME_ERROR)
# Stopped on purpose: nothing serves until someone (or a request, SLEEPING) starts it.
HALTED = (PAUSED, STOPPED, SLEEPING)
# Nothing serves and no request wakes it: a static Space's files are not served either.
SHUT = (PAUSED, STOPPED, DELETING)
# The Space is going away: its row is deleted next; no move leads out.
FINAL = (DELETING,)
ALIVE = tuple(s for s in STAGES if s not in FINAL)


class Move:
    """One row: `event` may move a Space from any of `sources` to `target`. (A plain class: the
    git account's post-receive imports this module for the names, without typing's import cost.)"""
    __slots__ = ("event", "sources", "target", "why")

    def __init__(self, event: str, sources: tuple, target: str, why: str):
        self.event, self.sources, self.target, self.why = event, tuple(sources), target, why

    def __repr__(self) -> str:
        return f"Move({self.event!r}, {self.sources!r}, {self.target!r})"


def _but(*excluded: str) -> tuple:
    return tuple(s for s in ALIVE if s not in excluded)


# Where a source set is wide, it is because other processes write meanwhile: a push while a
# container starts, a pause while a build runs. The last write wins, as it always has.
MOVES = (
    Move("push", ANSWERING, RUNNING_BUILDING, "a push or `rebuild` queues a build; the current version keeps serving"),
    Move("push", _but(*ANSWERING), BUILDING, "a push or `rebuild` queues a build; nothing serves meanwhile"),
    Move("config error", _but(PAUSED), CONFIG_ERROR, "heal: a branch tip post-receive missed has an invalid README"),
    Move("config error", _but(PAUSED), NO_APP_FILE, "heal: a branch tip post-receive missed lacks its app file or Dockerfile"),
    Move("build failed", ALIVE, BUILD_ERROR, "the build failed and no earlier version serves"),
    Move("build failed", ALIVE, RUNNING, "the build failed; the earlier version keeps serving"),
    Move("deploy", ANSWERING, RUNNING_APP_STARTING, "a new container starts beside the serving one (deploy, restart)"),
    Move("deploy", ALIVE, APP_STARTING, "a container starts: deploy, restart, resume, rollback, wake, restore, "
         "and a Space waiting for room once room frees (admission.py)"),
    Move("deploy", ALIVE, RUNNING, "a static Space's files are in place (no container to start)"),
    Move("deploy failed", ANSWERING, RUNNING, "a static Space's new files could not be written; the served ones stay"),
    Move("deploy failed", ALIVE, RUNTIME_ERROR, "a static Space's files could not be written and none serve"),
    Move("started", ALIVE, RUNNING, "the new container answers HTTP and takes the Space's port"),
    Move("no room", _but(*ANSWERING), WAITING_CAPACITY, "its flavor does not fit beside the running Spaces:"
         " it waits, holding the image to run, and starts when room frees (capacity.py)"),
    Move("no room", ANSWERING, RUNNING, "a new version's flavor does not fit now: the serving one keeps serving,"
         " its error says what for"),
    Move("never fits", ALIVE, RUNTIME_ERROR, "its flavor needs more than the machine gives Spaces even when"
         " nothing else runs"),
    Move("start failed", ANSWERING, RUNNING, "the new container did not start; the old one keeps serving"),
    Move("start failed", ALIVE, RUNTIME_ERROR, "the container exited, was killed for memory or did not answer in time"),
    Move("crashed", ANSWERING, RUNTIME_ERROR, "the app exited run.crash_limit times within run.crash_window_seconds"),
    Move("restore", (*ANSWERING,), RUNNING, "after a restart or reboot: serving again, no build waiting"),
    Move("restore", (*ANSWERING,), RUNNING_BUILDING, "after a restart or reboot: serving again, a build waiting"),
    Move("restore", STARTED, BUILDING, "after a restart or reboot its image is gone: built again"),
    Move("state rebuild", (NEW,), RUNNING, "`state rebuild` found its container running"),
    Move("state rebuild", (NEW,), PAUSED, "`state rebuild` found no running container"),
    Move("create", (NEW,), NO_APP_FILE, "`create` or the API's create_repo: a repository with no commit yet"),
    Move("pause", ALIVE, PAUSED, "`spacehooks pause`"),
    Move("stop", ALIVE, STOPPED, "the runner stops it (no command does today; `resume` starts it)"),
    Move("sleep", STARTED, SLEEPING, "no request for its sleep time; the next request wakes it"),
    Move("delete", STAGES, DELETING, "`spacehooks delete`"),
)
# the event of each stage runner.stop leaves a Space in
STOP_EVENTS = {PAUSED: "pause", STOPPED: "stop", SLEEPING: "sleep", DELETING: "delete"}


def _log():
    import logging  # here, not at the top: post-receive imports this module for the names
    return logging.getLogger("spacehooks.stages")


def transitions() -> dict[str, dict[str, tuple[str, ...]]]:
    """from-stage -> {to-stage: events that cause the move}, every stage a key."""
    table: dict[str, dict[str, tuple[str, ...]]] = {s: {} for s in STAGES}
    for move in MOVES:
        for source in move.sources:
            if source != move.target:
                table[source][move.target] = (*table[source].get(move.target, ()), move.event)
    return table


def allowed(source: str, target: str, event: str) -> bool:
    if source == target:
        return True  # not a move: the row's other fields change
    return any(m.event == event and m.target == target and source in m.sources for m in MOVES)


class IllegalStageChange(RuntimeError):
    """A move MOVES does not allow: a bug in spacehooks, never the user's doing."""


def change(st, space_id: str, target: str, event: str, **fields) -> bool:
    """Move the Space to `target` because of `event`, with other columns of its row.

    False when nothing was written: the Space is gone, or it is being deleted (a build or a
    push that races the delete has nothing left to tell). An undeclared move raises
    IllegalStageChange after logging it with the path of a crash log."""
    if event not in {m.event for m in MOVES} or target not in STAGES:
        _refuse(space_id, "?", target, event)
    space = st.get_space(space_id)
    if space is None:
        return False
    source = space["stage"]
    if source in FINAL and target != source:
        _log().warning("%s is %s: %s to %s not written", space_id, source, event, target)
        return False
    if not allowed(source, target, event):
        _refuse(space_id, source, target, event)
    st.update_space(space_id, stage=target, **fields)
    return True


def _refuse(space_id: str, source: str, target: str, event: str) -> None:
    import traceback

    from spacehooks.errors import report_bug  # only a bug gets here
    exc = IllegalStageChange(f"{space_id}: {event} may not move it from {source} to {target} "
                             "(not in spacehooks/stages.py MOVES); not written\n"
                             + "".join(traceback.format_stack(limit=12)[:-1]))
    path = report_bug(exc)
    _log().error("%s: illegal stage change %s -> %s (%s) refused; details: %s", space_id, source, target, event, path)
    raise IllegalStageChange(f"{space_id}: {event} may not move it from {source} to {target}; details: {path}")


def markdown_table() -> str:
    """MOVES as the Markdown table docs/ARCHITECTURE.md holds (tests/test_stages.py compares)."""
    lines = ["| event | from | to | when |", "|---|---|---|---|"]
    for m in MOVES:
        if len(m.sources) > len(STAGES) // 2:
            excluded = [s for s in STAGES if s not in m.sources]
            sources = "any but " + ", ".join(f"`{s}`" for s in excluded) if excluded else "any"
        else:
            sources = ", ".join(f"`{s}`" for s in m.sources)
        lines.append(f"| {m.event} | {sources} | `{m.target}` | {m.why} |")
    return "\n".join(lines) + "\n"
