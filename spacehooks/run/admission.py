"""Starting the Spaces that wait for room (WAITING_CAPACITY) once it frees: after a Space is
paused or deleted (admin), put to sleep (the gateway's sleeper), and at each pass of the worker
(anything else: a Space stopped, a flavor made smaller, a setting changed). Also: clearing a
Space's other containers at once, when its storage is about to go.
"""
from __future__ import annotations

import logging

from spacehooks import engine
from spacehooks.run import runner
from spacehooks.run import capacity
from spacehooks import state as state_mod

log = logging.getLogger("spacehooks.admission")


def admit_waiting(settings) -> list[str]:
    """Start the waiting Spaces that fit now, longest waiting first; returns those started."""
    st = state_mod.open(settings)
    try:
        waiting = sorted((s for s in st.list_spaces() if s["stage"] == capacity.WAITING),
                         key=lambda s: s["updated_at"])
    finally:
        st.close()
    started = []
    for space in waiting:
        st = state_mod.open(settings)
        try:
            current = st.get_space(space["id"])
            fits = current is not None and current["stage"] == capacity.WAITING and \
                capacity.shortfall(settings, st, current) is None
        finally:
            st.close()
        if not fits:
            continue
        try:
            runner.start(settings, space["id"])
        except Exception as exc:  # one Space failing to start must not keep the others waiting
            log.error("starting %s after waiting for room: %s", space["id"], exc)
            continue
        started.append(space["id"])
    return started


def clear_others(settings, space_id: str) -> None:
    """Remove the Space's containers other than the one serving now, grace cut short (its
    storage is about to go: no container may keep the file system)."""
    st = state_mod.open(settings)
    try:
        current = (st.get_space(space_id) or {}).get("container")
        for name in engine.get(settings).states(f"{runner.LABEL}={space_id}"):
            if name != current:
                runner.remove(settings, name)
                st.forget_retired(name)
    finally:
        st.close()
