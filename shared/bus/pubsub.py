"""The GCP bus: Google Cloud Pub/Sub.

`PubSubBus` publishes the JSON envelope (shared.bus.base.encode) with string attributes. Subscribers
are CloudEvent functions behind Eventarc (or push subscriptions), so this module only publishes;
`ensure_topology` creates the topics, dead-letter topics and subscriptions idempotently (Terraform
does the same in production; this serves the emulator, the demo and first-time setup).

The client honours `PUBSUB_EMULATOR_HOST` by itself (insecure channel, anonymous credentials).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2, field_mask_pb2

from shared.bus.base import TOPICS, Bus, encode

log = logging.getLogger("cloudact.bus")

DEAD_LETTER_SUFFIX = "-dead-letter"


def subscription_name(topic: str) -> str:
    """The subscription that delivers `topic` to its function."""
    return f"{topic}-sub"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}{DEAD_LETTER_SUFFIX}"


class PubSubBus(Bus):
    def __init__(self, project: str, publisher=None, timeout: float = 30.0):
        if not project:
            raise ValueError("the Pub/Sub bus needs a project (set GOOGLE_CLOUD_PROJECT)")
        self.project = project
        self.timeout = timeout
        self._owns_publisher = publisher is None
        self.publisher = publisher if publisher is not None else pubsub_v1.PublisherClient()

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def publish(self, topic: str, payload: dict[str, Any], attributes: dict[str, str] | None = None) -> str:
        attrs = {str(k): "" if v is None else str(v) for k, v in (attributes or {}).items()}
        future = self.publisher.publish(self.topic_path(topic), encode(payload), **attrs)
        message_id = future.result(timeout=self.timeout)
        log.debug("published %s to %s", message_id, topic)
        return message_id

    def close(self) -> None:
        if self._owns_publisher:
            stop = getattr(self.publisher, "stop", None)
            if stop:
                try:
                    stop()
                except Exception as e:  # noqa: BLE001 - closing must not mask the real outcome
                    log.debug("stopping the Pub/Sub publisher failed: %s", e)


@dataclass
class Topology:
    """What ensure_topology made sure exists (full resource names)."""

    topics: list[str] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def ensure_topology(
    project: str,
    push_endpoints: dict[str, str] | None = None,
    dead_letter: bool = True,
    max_delivery_attempts: int = 5,
    *,
    topics: tuple[str, ...] = TOPICS,
    min_backoff: float = 10.0,
    max_backoff: float = 600.0,
    ack_deadline: int = 60,
    push_service_account: str | None = None,
    publisher=None,
    subscriber=None,
    timeout: float = 30.0,
) -> Topology:
    """Create the topics, their dead-letter topics and the subscriptions; safe to run again.

    A topic with a URL in `push_endpoints` gets a push subscription to it (with an OIDC token for
    `push_service_account` when given); the others get a pull subscription. Each subscription has a
    retry policy (exponential backoff between `min_backoff` and `max_backoff`) and, with
    `dead_letter`, a dead-letter policy sending a message to `{topic}-dead-letter` after
    `max_delivery_attempts` (5..100) deliveries; each dead-letter topic gets a pull subscription so
    dead letters are kept. An existing subscription is updated to this configuration.

    In GCP, the Pub/Sub service agent also needs roles/pubsub.publisher on the dead-letter topics and
    roles/pubsub.subscriber on the subscriptions (granted by Terraform).
    """
    if dead_letter and not 5 <= max_delivery_attempts <= 100:
        raise ValueError("max_delivery_attempts must be between 5 and 100 (a Pub/Sub limit)")
    push_endpoints = push_endpoints or {}
    unknown = set(push_endpoints) - set(topics)
    if unknown:
        raise ValueError(f"push endpoints for unknown topics: {', '.join(sorted(unknown))}")
    publisher = publisher if publisher is not None else pubsub_v1.PublisherClient()
    subscriber = subscriber if subscriber is not None else pubsub_v1.SubscriberClient()
    out = Topology()

    def topic(name: str) -> str:
        path = publisher.topic_path(project, name)
        try:
            publisher.create_topic(request={"name": path}, timeout=timeout)
            out.created.append(path)
        except gexc.AlreadyExists:
            pass
        out.topics.append(path)
        return path

    def subscription(name: str, topic_path: str, push_url: str | None, dlq_path: str | None) -> str:
        path = subscriber.subscription_path(project, name)
        sub = pubsub_v1.types.Subscription(
            name=path,
            topic=topic_path,
            ack_deadline_seconds=ack_deadline,
            retry_policy=pubsub_v1.types.RetryPolicy(
                minimum_backoff=_duration(min_backoff), maximum_backoff=_duration(max_backoff)),
        )
        if push_url:
            push = pubsub_v1.types.PushConfig(push_endpoint=push_url)
            if push_service_account:
                push.oidc_token = pubsub_v1.types.PushConfig.OidcToken(
                    service_account_email=push_service_account, audience=push_url)
            sub.push_config = push
        if dlq_path:
            sub.dead_letter_policy = pubsub_v1.types.DeadLetterPolicy(
                dead_letter_topic=dlq_path, max_delivery_attempts=max_delivery_attempts)
        try:
            subscriber.create_subscription(request=sub, timeout=timeout)
            out.created.append(path)
        except gexc.AlreadyExists:
            existing = subscriber.get_subscription(request={"subscription": path}, timeout=timeout)
            if existing.topic != topic_path:
                raise ValueError(f"subscription {path} exists on {existing.topic}, not {topic_path}") from None
            paths = ["ack_deadline_seconds", "retry_policy", "push_config", "dead_letter_policy"]
            if _differs(existing, sub, paths):
                subscriber.update_subscription(
                    request={"subscription": sub, "update_mask": field_mask_pb2.FieldMask(paths=paths)},
                    timeout=timeout)
        out.subscriptions.append(path)
        return path

    for name in topics:
        topic_path = topic(name)
        dlq_path = None
        if dead_letter:
            dlq_path = topic(dead_letter_topic(name))
            subscription(subscription_name(dead_letter_topic(name)), dlq_path, None, None)
        subscription(subscription_name(name), topic_path, push_endpoints.get(name), dlq_path)
    return out


def _differs(existing, wanted, paths: list[str]) -> bool:
    return any(getattr(existing, p) != getattr(wanted, p) for p in paths)
