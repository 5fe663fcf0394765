"""The in-process bus of the embedded default.

Each publish is delivered, on a small pool of worker threads, to the CloudEvent function subscribed to
the topic, with the same envelope Eventarc delivers. A handler that raises is retried with backoff, as
Pub/Sub would redeliver; after the last attempt the message goes to `dead_letters`.

Run requests (whose delivery runs the job, in-process) are shared fairly: at most `org_workers`
(CLOUDACT_ORG_WORKERS, default 2) of one org's requests are delivered at once, and workers take the
orgs in turn, so one org's slow provider never holds every worker. Completions are short and are not
capped. The bus holds every run it has queued or is delivering (shared.lifecycle.hold), so a sweep in
this process never ends a run that is only waiting for its turn.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import lifecycle
from shared.bus.base import TOPIC_RUN_REQUESTS, Bus, cloud_event_parts, encode

log = logging.getLogger("cloudact.bus")


@dataclass
class _Delivery:
    topic: str
    handler: Callable
    message_id: str
    data: bytes
    attributes: dict[str, str] | None
    key: str | None  # the org whose share it counts against (None: not capped)
    run_id: str | None


class LocalBus(Bus):
    def __init__(self, project: str = "local", workers: int = 4, max_attempts: int = 3, retry_delay: float = 0.2,
                 org_workers: int | None = None):
        self.project = project
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.org_workers = org_workers or lifecycle.org_workers()
        self._handlers: dict[str, list[Callable]] = {}
        self._waiting: OrderedDict[str | None, deque[_Delivery]] = OrderedDict()  # by key, in turn order
        self._busy: Counter[str | None] = Counter()
        self._pending = 0  # waiting + being delivered
        self._closing = False
        self._cv = threading.Condition()
        self.dead_letters: list[dict[str, Any]] = []
        # daemon threads: a job stuck on a provider must not keep the process from exiting
        self._threads = [threading.Thread(target=self._work, name=f"cloudact-bus-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def subscribe(self, topic: str, handler: Callable) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def publish(self, topic: str, payload: dict[str, Any], attributes: dict[str, str] | None = None) -> str:
        message_id = uuid.uuid4().hex
        self._enqueue(topic, payload, message_id, attributes)
        return message_id

    def redeliver(self, topic: str, payload: dict[str, Any], message_id: str) -> None:
        """Deliver a message again with the same id, as Pub/Sub may (used by tests)."""
        self._enqueue(topic, payload, message_id, None)

    def _enqueue(self, topic, payload, message_id, attributes) -> None:
        data = encode(payload)
        run_id = payload.get("run_id") if isinstance(payload.get("run_id"), str) else None
        key = (attributes or {}).get("org") or payload.get("org_slug") if topic == TOPIC_RUN_REQUESTS else None
        for handler in self._handlers.get(topic, []):
            with self._cv:
                if self._closing:
                    raise RuntimeError("the bus is closed")
                if run_id:
                    lifecycle.hold(run_id)
                self._waiting.setdefault(key, deque()).append(
                    _Delivery(topic, handler, message_id, data, attributes, key, run_id))
                self._pending += 1
                self._cv.notify()

    def _next(self) -> _Delivery | None:
        """The oldest delivery of the first key in turn that has a free share (call with the lock held)."""
        for key, queue in self._waiting.items():
            if key is None or self._busy[key] < self.org_workers:
                item = queue.popleft()
                del self._waiting[key]
                if queue:  # back of the line: the next worker serves another org first
                    self._waiting[key] = queue
                self._busy[key] += 1
                return item
        return None

    def _work(self) -> None:
        while True:
            with self._cv:
                item = self._next()
                while item is None:
                    if self._closing and not self._waiting:
                        return
                    self._cv.wait()
                    item = self._next()
            try:
                self._deliver(item)
            finally:
                if item.run_id:
                    lifecycle.release(item.run_id)
                with self._cv:
                    self._busy[item.key] -= 1
                    self._pending -= 1
                    self._cv.notify_all()

    def _deliver(self, item: _Delivery) -> None:
        from cloudevents.http import CloudEvent

        sub = f"{item.topic}-{getattr(item.handler, '__name__', 'handler')}"
        for attempt in range(1, self.max_attempts + 1):
            ce_attrs, ce_data = cloud_event_parts(self.project, item.topic, sub, item.message_id, item.data,
                                                  item.attributes)
            try:
                item.handler(CloudEvent(ce_attrs, ce_data))
                return
            except Exception as e:  # noqa: BLE001 - a subscriber failure must not kill the bus
                log.warning("delivery of %s to %s failed (attempt %d/%d): %s", item.message_id, sub, attempt,
                            self.max_attempts, e)
                if attempt < self.max_attempts:
                    time.sleep(self.retry_delay * attempt)
        self.dead_letters.append({"topic": item.topic, "message_id": item.message_id, "data": item.data})

    def drain(self, timeout: float = 120) -> None:
        """Wait until every delivery (and what it published in turn) has finished."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("bus deliveries still running after timeout")
                self._cv.wait(left)

    def close(self) -> None:
        """Finish what is queued, then stop the workers."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        for t in self._threads:
            t.join()
