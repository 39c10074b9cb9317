"""The run command's supervisor: honcho's process manager (its output, prefixes and colours), except
that a process that stops is started again instead of stopping the others.

A stopped process is started again after a backoff (1 s, doubling to 30 s; back to 1 s once it has
run for a stable minute), so a process that cannot start does not spin. Servers that run detached
(the embedded PostgreSQL and Redis) are watched the same way: :meth:`Supervisor.watch` names how to
tell that one runs and how to start it. Ctrl-C or SIGTERM stops everything, as honcho does.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from honcho.manager import KILL_WAIT, SIGNALS, Manager
from honcho.process import Process

BACKOFF_FIRST = 1.0  # seconds before the first restart
BACKOFF_MAX = 30.0
STABLE = 60.0  # seconds of running after which the next restart waits BACKOFF_FIRST again
WATCH_EVERY = 0.5  # seconds between two looks at a watched server


class Backoff:
    """The wait before the next restart of one process or server."""

    def __init__(self) -> None:
        self.delay = BACKOFF_FIRST
        self.started = time.monotonic()

    def stopped(self) -> float:
        """The wait before starting again, given that it stopped now."""
        if time.monotonic() - self.started >= STABLE:
            self.delay = BACKOFF_FIRST
        wait, self.delay = self.delay, min(self.delay * 2, BACKOFF_MAX)
        return wait

    def restarted(self) -> None:
        self.started = time.monotonic()


class SupervisedProcess(Process):
    """honcho's process; when its command exits, what it leaves in its process group is killed
    (a killed Celery worker's pool processes, a killed uvicorn's workers) so that nothing of it
    runs beside its replacement and its output pipe closes."""

    def run(self, events: Any = None, ignore_signals: bool = False) -> None:
        # honcho's own seam for the child's constructor (its tests inject through it); pinned by
        # tests/foundation/test_supervisor.py, which fails if an upgrade renames it.
        original: Any = self._child_ctor  # type: ignore[has-type]

        def started(*args: Any, **kwargs: Any) -> Any:
            child = original(*args, **kwargs)
            threading.Thread(target=_reap_group, args=(child,), daemon=True).start()
            return child

        self._child_ctor = started
        super().run(events, ignore_signals)


def _reap_group(child: Any) -> None:
    child.wait()
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError as error:
        if error.errno not in (errno.ESRCH, errno.EPERM):
            raise


class Supervisor(Manager):
    def __init__(self, printer: Any = None) -> None:
        super().__init__(printer)
        self._process_ctor = SupervisedProcess
        self._backoff: dict[str, Backoff] = {}
        self._restart_at: dict[str, float] = {}
        self._watched: list[tuple[str, Callable[[], bool], Callable[[], Any]]] = []
        self._stop = threading.Event()

    def watch(self, name: str, running: Callable[[], bool], start: Callable[[], Any]) -> None:
        """Start ``name`` again (``start()``) whenever ``running()`` says it is not running."""
        self._watched.append((name, running, start))

    def say(self, text: str) -> None:
        self._system_print(text + "\n")

    def loop(self) -> None:
        def _terminate(signum: int, frame: Any) -> None:
            self.say(f"{SIGNALS[signum]['name']} received")
            self.returncode = SIGNALS[signum]["rc"]
            self.terminate()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        for name in self._processes:
            self._start_one(name)
        watchers = [
            threading.Thread(target=self._watch, args=watched, daemon=True)
            for watched in self._watched
        ]
        for watcher in watchers:
            watcher.start()
        exit_start: float | None = None
        try:
            while True:
                self._handle_events()
                now = time.monotonic()
                if not self._terminating:
                    for name, when in list(self._restart_at.items()):
                        if when <= now:
                            del self._restart_at[name]
                            self.say(f"starting {name} again")
                            self._start_one(name)
                    continue
                if self._all_stopped():
                    break
                if exit_start is None:
                    exit_start = now
                elif now - exit_start > KILL_WAIT:
                    self.kill()
        finally:
            self._stop.set()
            for watcher in watchers:
                watcher.join(timeout=5)

    def _handle_events(self) -> None:
        try:
            message = self.events.get(timeout=0.1)
        except queue.Empty:
            return
        process = self._processes.get(message.name)
        if message.type == "line":
            self._printer.write(message)
        elif message.type == "start" and process is not None:
            process["pid"] = message.data["pid"]
            self.say(f"{message.name} started (pid={message.data['pid']})")
            if self._terminating:  # asked to stop while it was starting
                self._procmgr.terminate(process["pid"])
        elif message.type == "stop" and process is not None:
            process["returncode"] = message.data["returncode"]
            process["process"].join(timeout=5)
            if self._terminating:
                self.say(f"{message.name} stopped (rc={message.data['returncode']})")
                return
            wait = self._backoff.setdefault(message.name, Backoff()).stopped()
            self._restart_at[message.name] = time.monotonic() + wait
            self.say(
                f"{message.name} stopped (rc={message.data['returncode']}); starting it again"
                f" in {wait:g} s"
            )

    def _start_one(self, name: str) -> None:
        process = self._processes[name]
        process.pop("pid", None)
        process.pop("returncode", None)
        self._backoff.setdefault(name, Backoff()).restarted()
        process["process"] = multiprocessing.Process(
            name=name, target=process["obj"].run, args=(self.events, True)
        )
        process["process"].start()

    def terminate(self) -> None:
        self._restart_at.clear()
        self._stop.set()
        super().terminate()

    def _killall(self, force: bool = False) -> None:
        for name, process in self._processes.items():
            if "returncode" in process or "pid" not in process:
                continue  # stopped, or not started yet (stopped once its start is known)
            signal_name = "SIGKILL" if force else "SIGTERM"
            self.say(f"sending {signal_name} to {name} (pid {process['pid']})")
            if force:
                self._procmgr.kill(process["pid"])
            else:
                self._procmgr.terminate(process["pid"])

    def _all_stopped(self) -> bool:
        return all("returncode" in process for process in self._processes.values())

    def _watch(self, name: str, running: Callable[[], bool], start: Callable[[], Any]) -> None:
        backoff = Backoff()
        while not self._stop.wait(WATCH_EVERY):
            if running():
                continue
            wait = backoff.stopped()
            self.say(f"the embedded {name} is not running; starting it again in {wait:g} s")
            if self._stop.wait(wait):
                return
            try:
                start()
            except Exception as error:  # say why, and try again after the next backoff
                self.say(f"the embedded {name} did not start: {type(error).__name__}: {error}")
            else:
                self.say(f"the embedded {name} runs again")
            backoff.restarted()
