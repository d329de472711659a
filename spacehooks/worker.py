"""Build worker: claims queued builds, builds, deploys; several at once, one per Space."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spacehooks import builder, logs, podman, runlogs, runner, supervise
from spacehooks import queue as queue_mod
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError, report_bug

RETRY_PAUSE = 5  # seconds before the loop tries a failed step again
IDLE_POLL = 0.3  # how soon a queued build starts; one small SQLite read each
log = logging.getLogger("spacehooks.worker")


class Worker:
    def __init__(self, settings, gc=None):
        """gc(settings, echo) runs every run.gc_interval_seconds between builds (images.gc;
        passed in because the admin modules come after this one)."""
        self.settings = settings
        self._orphans_checked = False
        self._gc = gc
        self._last_gc = time.monotonic()
        self._pump: runlogs.RunLogPump | None = None  # the long-running loop copies app output
        self._supervisor: supervise.Supervisor | None = None  # ... and starts crashed apps again

    def run(self, stop: threading.Event, restore: bool = True) -> None:
        """Blocking loop until stop is set (serve runs it in a thread).

        First the Spaces that should serve but do not (after a restart or a reboot) start
        again, before any queued build, so that a build never races a restore."""
        self._pump = runlogs.RunLogPump(self.settings)
        if restore:
            while not stop.is_set() and not self._survive(self._restore)[0]:
                stop.wait(RETRY_PAUSE)
        # only now: containers stopped by a reboot are restore's to start, not crashes
        self._supervisor = supervise.Supervisor(self.settings)
        concurrency = max(1, int(self.settings["build.concurrency"]))
        active: set = set()
        lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="build") as pool:
            while not stop.is_set():
                ok, claimed = self._survive(self._next_build, lock, active, concurrency)
                if not ok:
                    stop.wait(RETRY_PAUSE)
                    continue
                if claimed:
                    future = pool.submit(self.process, claimed)
                    with lock:
                        active.add(future)
                    future.add_done_callback(lambda f: (lock.acquire(), active.discard(f), lock.release()))
                    continue
                stop.wait(IDLE_POLL)

    def _restore(self) -> None:
        self._housekeeping()
        from spacehooks import restore as restore_mod
        restore_mod.restore_all(self.settings)

    def _next_build(self, lock: threading.Lock, active: set, concurrency: int) -> dict | None:
        self._housekeeping()
        with lock:
            if not active:  # never while a build runs: gc must not race one
                self.scheduled_gc()
            return self._claim(concurrency) if len(active) < concurrency else None

    def _claim(self, concurrency: int) -> dict | None:
        st = state_mod.open(self.settings)
        try:
            return queue_mod.claim(st, concurrency)
        finally:
            st.close()

    @staticmethod
    def _survive(step, *args) -> tuple[bool, object]:
        """Run one step of the loop: (True, its result), or (False, None) once the failure is
        logged, so that the loop goes on."""
        try:
            return True, step(*args)
        except SpaceError as exc:
            log.error("worker: %s; trying again in %ss", exc.format_message(), RETRY_PAUSE)
        except Exception as exc:  # a bug, or a store locked for long: the builds must not stop for good
            log.error("worker: step failed, see %s; trying again in %ss", report_bug(exc), RETRY_PAUSE)
        return False, None

    def run_once(self) -> bool:
        """Claim and process one build in this thread; False when nothing was queued."""
        self._housekeeping()
        build = self._claim(max(1, int(self.settings["build.concurrency"])))
        if build is None:
            return False
        self.process(build)
        return True

    def scheduled_gc(self) -> bool:
        """Run gc when run.gc_interval_seconds have passed since the last one; True if it ran."""
        interval = float(self.settings["run.gc_interval_seconds"])
        if self._gc is None or interval <= 0 or time.monotonic() - self._last_gc < interval:
            return False
        self._last_gc = time.monotonic()
        lines: list[str] = []
        try:
            self._gc(self.settings, lines.append)
        except SpaceError as exc:
            log.warning("scheduled gc failed: %s", exc.format_message())
            return True
        except Exception as exc:  # a gc bug must not stop the builds
            log.error("scheduled gc crashed, see %s", report_bug(exc))
            return True
        log.info("scheduled gc: %s", ", ".join(line for line in lines if line[:1].isdigit()))
        return True

    def _housekeeping(self) -> None:
        st = state_mod.open(self.settings)
        try:
            st.heartbeat()
            if not self._orphans_checked:
                queue_mod.requeue_orphans(st)
                self._orphans_checked = True
            runner.reap(self.settings, st)
            if self._pump:
                self._pump.sync(st)
            if self._supervisor:
                self._supervisor.check(st)
        finally:
            st.close()

    def process(self, build: dict) -> None:
        st = state_mod.open(self.settings)
        try:
            self._process(st, build)
        except Exception as exc:  # a crash must not leave the build running forever
            crash_log = report_bug(exc)
            st.update_build(build["id"], status=state_mod.FAILED, finished_at=time.time(),
                            error=f"internal error, see {crash_log}")
            _fail_space(st, build, f"internal error in spacehooks, see {crash_log}")
        finally:
            st.close()

    def _process(self, st: state_mod.State, build: dict) -> None:
        space_id, build_id = build["space_id"], build["id"]
        space = st.get_space(space_id)
        log_path = st.build_log_path(space_id, build_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", buffering=1) as log_file:
            capped = logs.CappedLog(log_file, int(self.settings["logs.max_bytes"]))
            write = capped.write
            try:
                image = builder.build(
                    self.settings, space_id, Path(space["repo_path"]), build["commit"], build_id, build["config"],
                    secrets=state_mod.read_secrets(self.settings.home, space_id), no_cache=build["no_cache"],
                    write=write, should_stop=lambda: queue_mod.stop_requested(st, build_id))
            except podman.BuildStopped:
                capped.end()
                write("Build stopped: superseded by a newer push")
                st.update_build(build_id, status=state_mod.SUPERSEDED, finished_at=time.time(),
                                error="superseded by a newer push")
                return
            except (podman.BuildFailed, SpaceError) as exc:
                capped.end()
                message = exc.format_message() if isinstance(exc, SpaceError) else str(exc)
                write(f"BUILD_ERROR: {message}")
                st.update_build(build_id, status=state_mod.FAILED, finished_at=time.time(), error=message)
                _fail_space(st, build, f"build #{build_id} failed: {message}")
                return
            capped.end()
            if queue_mod.stop_requested(st, build_id):
                write("Build done but superseded by a newer push: not deployed")
                st.update_build(build_id, status=state_mod.SUPERSEDED, finished_at=time.time(), image=image,
                                error="superseded by a newer push")
                return
            write("Starting the new version")
            st.update_build(build_id, image=image)
            runner.deploy(self.settings, space_id, image, build_id, build["commit"], build["config"])
            space = st.get_space(space_id)
            if space["build_id"] == build_id and space["stage"] == "RUNNING":
                write(f"Deployed: {space_id} is RUNNING" + (f" on 127.0.0.1:{space['port']}" if space["port"] else ""))
            else:
                write(f"Not deployed: {space.get('error') or space['stage']}")
            # the build row ends last: post-receive waits on it and then reads the Space's stage
            st.update_build(build_id, status=state_mod.SUCCEEDED, finished_at=time.time())


def _fail_space(st: state_mod.State, build: dict, message: str) -> None:
    """A failed build leaves the previous version serving; the Space shows BUILD_ERROR only without one."""
    space = st.get_space(build["space_id"])
    if space and space.get("container") and space["stage"] in state_mod.ANSWERING:
        st.update_space(build["space_id"], stage="RUNNING", error=message)
    elif space and space.get("build_id") and (space.get("config") or {}).get("sdk") == "static":
        st.update_space(build["space_id"], stage="RUNNING", error=message)
    else:
        st.update_space(build["space_id"], stage="BUILD_ERROR", error=message)


def main_loop(settings, gc=None) -> None:
    logs.setup_logging()
    stop = threading.Event()
    try:
        Worker(settings, gc=gc).run(stop)
    except KeyboardInterrupt:
        stop.set()

