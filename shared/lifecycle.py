"""What keeps a run alive and what ends it, inside the process that works on it.

A job (and the conversion after it) works inside a `Scope`: the run's lease token, its deadline and a
stop flag. A daemon thread renews the lease every third of `CLOUDACT_RUN_LEASE_S` while the scope is
open; when a renewal finds the run no longer ours (cancelled, or failed by a sweep) it raises the stop
flag. The work looks at the flag and the deadline at its checkpoints (`Scope.checkpoint`: between
pages, files and batches, before each provider request and after each retry wait), so a cancelled run
stops without writing and a run past its deadline fails with a message saying what it was doing.
`current()` is the scope of the run this thread works for: `shared.http.ApiClient` reads the deadline
from it, so retries and `Retry-After` waits never outlast the run.

The process also knows which runs it is responsible for (`hold`/`release`: the in-process bus holds
every run whose request or completion it has queued or is delivering). A sweep in this process leaves
those alone: on the embedded warehouse a renewal can wait behind another run's long write, and a run
this process is still working on is not dead. A scope past its deadline by a whole lease counts as
hung, not alive, and is no longer renewed, so even a job stuck where no checkpoint is reached ends.

Settings (seconds, read when used):
  CLOUDACT_RUN_LEASE_S          120   a running run whose lease is not renewed for this long is failed
  CLOUDACT_RUN_QUEUE_TIMEOUT_S  1800  a queued run no worker started within this is failed
  CLOUDACT_RUN_DEADLINE_S       3600  how long a run's job may extract and land
  CLOUDACT_ORG_WORKERS          2     runs of one org working at once in the in-process bus
  CLOUDACT_SHUTDOWN_GRACE_S     30    how long `cloudact serve` lets in-flight runs finish on SIGTERM
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from shared.config import env_number
from shared.errors import ExtractError

log = logging.getLogger("cloudact.lifecycle")


def _number(name: str, default: float, cast=float) -> float:
    return env_number(name, default, cast, least=0, above=True)


def lease_seconds() -> float:
    return _number("CLOUDACT_RUN_LEASE_S", 120.0)


def queue_timeout_seconds() -> float:
    return _number("CLOUDACT_RUN_QUEUE_TIMEOUT_S", 1800.0)


def deadline_seconds() -> float:
    return _number("CLOUDACT_RUN_DEADLINE_S", 3600.0)


def org_workers() -> int:
    return int(_number("CLOUDACT_ORG_WORKERS", 2, int))


def shutdown_grace_seconds() -> float:
    return _number("CLOUDACT_SHUTDOWN_GRACE_S", 30.0)


class RunStopped(Exception):
    """The run was cancelled, taken from this job, or the server is shutting down: stop, write nothing."""

    def __init__(self, run_id: str, reason: str):
        super().__init__(f"run {run_id} stopped: {reason}")
        self.run_id, self.reason = run_id, reason


class DeadlineExceeded(ExtractError):
    """The run reached CLOUDACT_RUN_DEADLINE_S; the message says what it was doing."""


class Scope:
    """One run being worked on in this process (see the module docstring)."""

    def __init__(self, run_id: str, org_slug: str, token: str, *, lease_s: float, deadline_s: float,
                 renew: Callable[[], str | None] | None = None):
        self.run_id, self.org_slug, self.token = run_id, org_slug, token
        self.lease_s, self.deadline_s = lease_s, deadline_s
        self.deadline = time.monotonic() + deadline_s
        self._renew = renew
        self._stop = threading.Event()
        self._closed = threading.Event()
        self.reason: str | None = None

    # -- ending ----------------------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.reason = reason
            self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def hung(self) -> bool:
        """Past its deadline by a whole lease: no checkpoint has ended it, so stop vouching for it."""
        return self.remaining() < -self.lease_s

    def checkpoint(self, doing: str | None = None) -> None:
        if self._stop.is_set():
            raise RunStopped(self.run_id, self.reason or "stopped")
        if self.remaining() <= 0:
            raise DeadlineExceeded(self.deadline_message(doing))

    def deadline_message(self, doing: str | None = None) -> str:
        what = f" while {doing}" if doing else ""
        return (f"the run reached its deadline of {self.deadline_s:g} s (CLOUDACT_RUN_DEADLINE_S){what}; "
                "it was failed without writing. Re-run it later, or raise the deadline for slow providers")

    def wait(self, seconds: float) -> None:
        """Sleep, waking early when the run is stopped (then RunStopped)."""
        self._stop.wait(max(0.0, seconds))
        if self._stop.is_set():
            raise RunStopped(self.run_id, self.reason or "stopped")

    @property
    def fence(self):
        from shared.warehouse.base import Fence

        return Fence(self.run_id, self.token)

    # -- the lease ---------------------------------------------------------------------------------
    def _keep(self) -> None:
        interval = self.lease_s / 3
        while not self._closed.wait(interval):
            if self.hung or self._renew is None:
                continue
            try:
                lost = self._renew()
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried next tick; the lease outlasts two
                log.warning("renewing the lease of %s failed: %s", self.run_id, e)
                continue
            if lost:
                self.stop(lost)
                return


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("cloudact_run_scope", default=None)
_lock = threading.Lock()
_scopes: dict[str, Scope] = {}
_held: Counter[str] = Counter()


def current() -> Scope | None:
    return _current.get()


@contextlib.contextmanager
def working(scope: Scope) -> Iterator[Scope]:
    """Work on a run: the scope is current in this thread, known to this process and its lease kept."""
    with _lock:
        _scopes[scope.run_id] = scope
    token = _current.set(scope)
    keeper = threading.Thread(target=scope._keep, name=f"lease-{scope.run_id[-8:]}", daemon=True)
    keeper.start()
    try:
        yield scope
    finally:
        scope._closed.set()
        _current.reset(token)
        with _lock:
            if _scopes.get(scope.run_id) is scope:
                del _scopes[scope.run_id]


def hold(run_id: str) -> None:
    with _lock:
        _held[run_id] += 1


def release(run_id: str) -> None:
    with _lock:
        _held[run_id] -= 1
        if _held[run_id] <= 0:
            del _held[run_id]


def alive() -> set[str]:
    """Runs this process is working on or has queued, less hung ones: a sweep here leaves them alone."""
    with _lock:
        runs = set(_held) | set(_scopes)
        return {r for r in runs if not (r in _scopes and _scopes[r].hung)}


def stop_local(run_id: str, org_slug: str, reason: str) -> bool:
    """Raise the stop flag of this org's run if this process works on it (no effect across orgs)."""
    with _lock:
        scope = _scopes.get(run_id)
    if scope is None or scope.org_slug != org_slug:
        return False
    scope.stop(reason)
    return True


def stop_all(reason: str) -> list[Scope]:
    """Stop every run this process works on (shutdown); returns their scopes."""
    with _lock:
        scopes = list(_scopes.values())
    for s in scopes:
        s.stop(reason)
    return scopes


def held() -> set[str]:
    with _lock:
        return set(_held) | set(_scopes)
