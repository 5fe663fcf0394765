"""The process-wide wiring of warehouse, bus and launcher for the chosen backend.

Cloud Function and job entry points are plain module-level functions, so they reach their
dependencies through `runtime.get()`. Tests and the CLI install their own with `runtime.use(...)`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

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


def embedded(s: Settings | None = None, warehouse: Warehouse | None = None) -> Runtime:
    """DuckDB + in-process bus + in-process launcher, with the functions subscribed to the topics."""
    from functions import main as fn
    from shared.bus.base import TOPIC_RUN_COMPLETED, TOPIC_RUN_REQUESTS
    from shared.bus.local import LocalBus
    from shared.launcher.local import LocalLauncher
    from shared.warehouse.duckdb import DuckDBWarehouse

    s = s or current_settings()
    bus = LocalBus()
    bus.subscribe(TOPIC_RUN_REQUESTS, fn.dispatch_run)
    bus.subscribe(TOPIC_RUN_COMPLETED, fn.convert_on_completion)
    return Runtime(s, warehouse or DuckDBWarehouse(s.warehouse_path), bus, LocalLauncher())


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
