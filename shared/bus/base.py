"""The message bus: three topics, one envelope.

Messages are JSON objects. Subscribers are CloudEvent functions and receive exactly what Eventarc
delivers for a Pub/Sub message (type google.cloud.pubsub.topic.v1.messagePublished, data
{"message": {"data": base64, "attributes", "messageId", "publishTime"}, "subscription"}), locally
and in GCP alike.
"""
from __future__ import annotations

import abc
import base64
import datetime as dt
import json
from typing import Any

TOPIC_RUN_REQUESTS = "pipeline-run-requests"
TOPIC_RUN_COMPLETED = "pipeline-run-completed"
# a schedule firing (Cloud Scheduler, or `cloudact serve` each minute): no run yet, so not a run request
TOPIC_SCHEDULE_TICKS = "pipeline-schedule-ticks"
TOPICS = (TOPIC_RUN_REQUESTS, TOPIC_RUN_COMPLETED, TOPIC_SCHEDULE_TICKS)
PUBLISHED_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


class Bus(abc.ABC):
    @abc.abstractmethod
    def publish(self, topic: str, payload: dict[str, Any], attributes: dict[str, str] | None = None) -> str:
        """Publish a JSON payload; return the message id."""

    def close(self) -> None:
        pass


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, default=str).encode()


def cloud_event_parts(project: str, topic: str, subscription: str, message_id: str,
                      data: bytes, attributes: dict[str, str] | None) -> tuple[dict, dict]:
    """The (attributes, data) of the CloudEvent Eventarc would deliver for this message."""
    now = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    ce_attrs = {
        "id": message_id, "specversion": "1.0", "type": PUBLISHED_TYPE,
        "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
        "time": now, "datacontenttype": "application/json",
    }
    ce_data = {
        "message": {"data": base64.b64encode(data).decode(), "attributes": attributes or {},
                    "messageId": message_id, "publishTime": now},
        "subscription": f"projects/{project}/subscriptions/{subscription}",
    }
    return ce_attrs, ce_data


def decode(cloud_event) -> tuple[dict[str, Any], dict[str, str], str]:
    """(payload, attributes, message id) from a CloudEvent carrying a Pub/Sub message."""
    data = cloud_event.data if hasattr(cloud_event, "data") else cloud_event["data"]
    message = (data or {}).get("message") or {}
    raw = message.get("data")
    if not raw:
        raise ValueError("CloudEvent has no Pub/Sub message data")
    payload = json.loads(base64.b64decode(raw))
    if not isinstance(payload, dict):
        raise ValueError("Pub/Sub message data is not a JSON object")
    return payload, message.get("attributes") or {}, message.get("messageId") or ""
