"""The process-wide wiring of warehouse, bus and launcher for the chosen backend.

Cloud Function and job entry points are plain module-level functions, so they reach their
dependencies through `runtime.get()`. Tests and the CLI install their own with `runtime.use(...)`.
The embedded runtime runs the entry points' code in this process; the entry points hand it in (`wire`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.bus.base import Bus
from shared.config import Settings, settings as current_settings
from shared.launcher.base import Launcher
from shared.warehouse.base import Warehouse

_lock = threading.Lock()
_current: Runtime | None = None


@dataclass
class Runtime:
    settings: Settings
    warehouse: Warehouse
    bus: Bus
    launcher: Launcher

    def close(self) -> None:
        self.bus.close()
        self.warehouse.close()


@dataclass(frozen=True)
class Wiring:
    """What an entry point hands the embedded runtime: the job the in-process launcher runs, and the CloudEvent
    function the in-process bus delivers each topic to. The library never imports jobs/ or functions/."""
    run_job: Callable[[dict[str, Any]], Any]
    handlers: Mapping[str, Callable[[Any], Any]]


_wiring: Wiring | None = None


def wire(wiring: Wiring) -> None:
    """Install what embedded runtimes run (jobs.runner.wire does it for the CLI, `python -m jobs` and the tests)."""
    global _wiring
    with _lock:
        _wiring = wiring


def embedded(s: Settings | None = None, warehouse: Warehouse | None = None, wiring: Wiring | None = None) -> Runtime:
    """DuckDB + in-process bus + in-process launcher, with the wired functions subscribed to the topics."""
    from shared.bus.local import LocalBus
    from shared.launcher.local import LocalLauncher
    from shared.warehouse.duckdb import DuckDBWarehouse

    wiring = wiring or _wiring
    if wiring is None:
        # a bus with no subscribers would leave every run queued for ever
        raise RuntimeError("the embedded runtime is not wired: the entry point calls shared.runtime.wire "
                           "(jobs.runner.wire) before the first runtime.get()")
    s = s or current_settings()
    bus = LocalBus()
    for topic, handler in wiring.handlers.items():
        bus.subscribe(topic, handler)
    return Runtime(s, warehouse or DuckDBWarehouse(s.warehouse_path), bus, LocalLauncher(wiring.run_job))


def gcp(s: Settings | None = None) -> Runtime:
    from shared.bus.pubsub import PubSubBus
    from shared.launcher.cloudrun import CloudRunLauncher
    from shared.warehouse.bigquery import BigQueryWarehouse

    s = s or current_settings()
    return Runtime(s, BigQueryWarehouse(project=s.project, location=s.bigquery_location), PubSubBus(project=s.project),
                   CloudRunLauncher(project=s.project, region=s.region))


def get() -> Runtime:
    global _current
    with _lock:
        if _current is None:
            s = current_settings()
            _current = gcp(s) if s.backend == "gcp" else embedded(s)
        return _current


def use(rt: Runtime | None) -> Runtime | None:
    """Install `rt` as the process runtime (None clears it); returns the previous one."""
    global _current
    with _lock:
        previous, _current = _current, rt
        return previous
