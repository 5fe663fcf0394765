"""The in-process bus of the embedded default.

Each publish is delivered, on a small worker pool, to the CloudEvent function subscribed to the
topic, with the same envelope Eventarc delivers. A handler that raises is retried with backoff, as
Pub/Sub would redeliver; after the last attempt the message goes to `dead_letters`.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from shared.bus.base import Bus, cloud_event_parts, encode

log = logging.getLogger("cloudact.bus")


class LocalBus(Bus):
    def __init__(self, project: str = "local", workers: int = 4, max_attempts: int = 3, retry_delay: float = 0.2):
        self.project = project
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self._handlers: dict[str, list[Callable]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cloudact-bus")
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self.dead_letters: list[dict[str, Any]] = []

    def subscribe(self, topic: str, handler: Callable) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def publish(self, topic: str, payload: dict[str, Any], attributes: dict[str, str] | None = None) -> str:
        message_id = uuid.uuid4().hex
        data = encode(payload)
        for handler in self._handlers.get(topic, []):
            fut = self._pool.submit(self._deliver, topic, handler, message_id, data, attributes)
            with self._lock:
                self._pending.add(fut)
            fut.add_done_callback(self._done)
        return message_id

    def redeliver(self, topic: str, payload: dict[str, Any], message_id: str) -> None:
        """Deliver a message again with the same id, as Pub/Sub may (used by tests)."""
        for handler in self._handlers.get(topic, []):
            fut = self._pool.submit(self._deliver, topic, handler, message_id, encode(payload), None)
            with self._lock:
                self._pending.add(fut)
            fut.add_done_callback(self._done)

    def _done(self, fut: Future) -> None:
        with self._lock:
            self._pending.discard(fut)

    def _deliver(self, topic, handler, message_id, data, attributes) -> None:
        from cloudevents.http import CloudEvent

        sub = f"{topic}-{getattr(handler, '__name__', 'handler')}"
        for attempt in range(1, self.max_attempts + 1):
            ce_attrs, ce_data = cloud_event_parts(self.project, topic, sub, message_id, data, attributes)
            try:
                handler(CloudEvent(ce_attrs, ce_data))
                return
            except Exception as e:  # noqa: BLE001 - a subscriber failure must not kill the bus
                log.warning("delivery of %s to %s failed (attempt %d/%d): %s", message_id, sub, attempt, self.max_attempts, e)
                if attempt < self.max_attempts:
                    time.sleep(self.retry_delay * attempt)
        self.dead_letters.append({"topic": topic, "message_id": message_id, "data": data})

    def drain(self, timeout: float = 120) -> None:
        """Wait until every delivery (and what it published in turn) has finished."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for fut in pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("bus deliveries still running after timeout")
                fut.exception(timeout=left)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
