"""Build worker: claims queued builds, builds, deploys; several at once, one per Space."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spacehooks import engine, logs, spool
from spacehooks.build import builder
from spacehooks.engine import netfence
from spacehooks.queue import heal, intake
from spacehooks.run import runlogs, runner, supervise
from spacehooks.run import admission
from spacehooks.queue import jobs as queue_mod
from spacehooks import stages
from spacehooks.push import spaceconfig
from spacehooks import state as state_mod
from spacehooks.errors import SpaceError, report_bug

RETRY_PAUSE = 5  # seconds before the loop tries a failed step again
SERVICE_RETRIES = 3  # a build cut off by a Podman outage this often fails (the build may be the cause)
IDLE_POLL = 0.3  # how soon a queued build starts; one small SQLite read each
RECORD_POLL = 0.02  # how soon a push record is taken in: one stat() of incoming/ each
FENCE_CHECK = 10  # seconds between checks that the network fence is still loaded
log = logging.getLogger("spacehooks.worker")


class Worker:
    def __init__(self, settings, gc=None):
        """gc(settings) -> GcResult runs every run.gc_interval_seconds between builds (images.gc;
        passed in because the admin modules come after this one)."""
        self.settings = settings
        self._orphans_checked = False
        self._gc = gc
        self._last_gc = time.monotonic()
        self._pump: runlogs.RunLogPump | None = None  # the long-running loop copies app output
        self._healer = heal.Healer(settings)
        self._outage = engine.Outage(log, "builds and container clean-up")
        self._fence_due = 0.0  # the first housekeeping loads the fence with current settings
        self._supervisor: supervise.Supervisor | None = None  # ... and starts crashed apps again
        self._incoming_seen: int | None = None  # incoming/'s time when records were last taken in

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
                self._idle(stop)

    def _idle(self, stop: threading.Event) -> None:
        """Wait until the next turn, or less when the git account drops a push record: the
        push waits for its answer ("Build #N queued"), and its Space then shows BUILDING."""
        deadline = time.monotonic() + IDLE_POLL
        seen = self._incoming_seen  # from before the turn took records in: none is missed
        while not stop.wait(RECORD_POLL) and time.monotonic() < deadline:
            stamp = spool.incoming_stamp(self.settings.home)
            if stamp != seen:
                if spool.waiting(self.settings.home):
                    return
                seen = stamp  # records taken in, or a file that is no record

    def _restore(self) -> None:
        self._housekeeping()
        from spacehooks.run import restore as restore_mod
        restore_mod.restore_all(self.settings)

    def _next_build(self, lock: threading.Lock, active: set, concurrency: int) -> dict | None:
        self._housekeeping()
        if not self._podman_ok():
            return None  # builds wait in the queue while the service is down
        with lock:
            if not active:  # never while a build runs: gc must not race one
                self.scheduled_gc()
            return self._claim(concurrency) if len(active) < concurrency else None

    def _podman_ok(self) -> bool:
        """False while the Podman service is down (asked again with backoff, not every pass)."""
        if self._outage.since is None:
            return True
        if not self._outage.due():
            return False
        if engine.get(self.settings).reachable():
            self._outage.up()
            return True
        self._outage.down("not reachable")
        return False

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
        try:
            result = self._gc(self.settings)
        except SpaceError as exc:
            log.warning("scheduled gc failed: %s", exc.format_message())
            return True
        except Exception as exc:  # a gc bug must not stop the builds
            log.error("scheduled gc crashed, see %s", report_bug(exc))
            return True
        log.info("scheduled gc: %s", ", ".join(result.counts()))
        return True

    def _housekeeping(self) -> None:
        if time.monotonic() >= self._fence_due:  # a firewall reload flushes it under running Spaces
            (netfence.ensure if self._fence_due else netfence.apply)(self.settings)
            self._fence_due = time.monotonic() + FENCE_CHECK
        st = state_mod.open(self.settings)
        try:
            st.heartbeat()
            # pushes the git account recorded: checked and queued here, their answers kept current
            self._incoming_seen = spool.incoming_stamp(self.settings.home)
            intake.take_all(self.settings, st)
            intake.publish(self.settings, st)
            spool.beat(self.settings.home)
            spool.share_settings(self.settings)  # post-receive then needs no YAML parser
            if not self._orphans_checked:
                queue_mod.requeue_orphans(st)
                self._orphans_checked = True
            if self._podman_ok():
                try:
                    runner.reap(self.settings, st)
                    admission.admit_waiting(self.settings)  # room freed since the last pass
                except Exception:
                    if engine.get(self.settings).reachable():
                        raise
                    self._outage.down("not reachable")
            if self._healer.due():
                self._heal(st)
            if self._pump:
                self._pump.sync(st)
            if self._supervisor:
                self._supervisor.check(st)
        finally:
            st.close()

    def _heal(self, st: state_mod.State) -> None:
        try:
            self._healer.run(st)
        except SpaceError as exc:
            log.error("worker: drift check: %s", exc.format_message())
        except Exception as exc:  # the builds go on; the next pass tries again
            log.error("worker: drift check failed, see %s", report_bug(exc))

    def process(self, build: dict) -> None:
        st = state_mod.open(self.settings)
        try:
            self._process(st, build)
        except engine.ServiceLost as exc:
            self._requeue(st, build, str(exc))
        except Exception as exc:  # a crash must not leave the build running forever
            if not engine.get(self.settings).reachable():  # e.g. the deploy met the outage
                self._requeue(st, build, f"the Podman service went away ({type(exc).__name__})")
                return
            crash_log = report_bug(exc)
            st.update_build(build["id"], status=state_mod.FAILED, finished_at=time.time(),
                            error=f"internal error, see {crash_log}")
            _fail_space(st, build, f"internal error in spacehooks, see {crash_log}")
        finally:
            st.close()

    def _requeue(self, st: state_mod.State, build: dict, reason: str) -> None:
        """A build the Podman service dropped is not the Space's failure: it goes back to the queue."""
        self._outage.down(reason)
        attempts = int(build.get("attempts") or 0) + 1
        try:
            with st.build_log_path(build["space_id"], build["id"]).open("a") as fh:
                fh.write(f"{reason}: the build is queued again (attempt {attempts} of {SERVICE_RETRIES})\n")
        except OSError:
            pass  # the build row below says it too
        if queue_mod.stop_requested(st, build["id"]):
            st.update_build(build["id"], status=state_mod.SUPERSEDED, finished_at=time.time(),
                            error="superseded by a newer push")
        elif attempts >= SERVICE_RETRIES:
            message = f"{reason}, {attempts} times: not tried again"
            st.update_build(build["id"], status=state_mod.FAILED, finished_at=time.time(), error=message,
                            attempts=attempts)
            _fail_space(st, build, f"build #{build['id']} failed: {message}")
        else:
            st.update_build(build["id"], status=state_mod.QUEUED, worker_pid=None, started_at=None,
                            attempts=attempts, error=f"queued again: {reason}")

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
            except engine.BuildStopped:
                capped.end()
                write("Build stopped: superseded by a newer push")
                st.update_build(build_id, status=state_mod.SUPERSEDED, finished_at=time.time(),
                                error="superseded by a newer push")
                return
            except (engine.BuildFailed, SpaceError) as exc:
                capped.end()
                message = exc.format_message() if isinstance(exc, SpaceError) else str(exc)
                if not engine.get(self.settings).reachable():
                    # the service went away as the build began (its network, the context upload):
                    # not the Space's failure, the build goes back to the queue
                    raise engine.ServiceLost(message) from exc
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
            if space["build_id"] == build_id and space["stage"] == stages.RUNNING:
                write(f"Deployed: {space_id} is RUNNING" + runner.where(self.settings, space))
            else:
                write(f"Not deployed: {space.get('error') or space['stage']}")
            # the build row ends last: post-receive waits on it and then reads the Space's stage
            st.update_build(build_id, status=state_mod.SUCCEEDED, finished_at=time.time())


def _fail_space(st: state_mod.State, build: dict, message: str) -> None:
    """A failed build leaves the previous version serving; the Space shows BUILD_ERROR only without one."""
    space = st.get_space(build["space_id"])
    if space and space.get("container") and space["stage"] in stages.ANSWERING:
        stages.change(st, build["space_id"], stages.RUNNING, "build failed", error=message)
    elif space and space.get("build_id") and spaceconfig.is_static(space.get("config") or {}):
        stages.change(st, build["space_id"], stages.RUNNING, "build failed", error=message)
    else:
        stages.change(st, build["space_id"], stages.BUILD_ERROR, "build failed", error=message)


def main_loop(settings, gc=None) -> None:
    logs.setup_logging()
    stop = threading.Event()
    try:
        Worker(settings, gc=gc).run(stop)
    except KeyboardInterrupt:
        stop.set()

