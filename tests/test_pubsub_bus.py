"""PubSubBus and ensure_topology against the real Pub/Sub emulator (skipped when it is absent)."""
from __future__ import annotations

import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

from shared.bus.base import (
    PUBLISHED_TYPE,
    TOPIC_RUN_COMPLETED,
    TOPIC_RUN_REQUESTS,
    TOPIC_SCHEDULE_TICKS,
    TOPICS,
    cloud_event_parts,
    decode,
)
from tests.emulators import pubsub_emulator, pubsub_emulator_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.emulator

FIXTURES_FN = Path(__file__).resolve().parent / "fixtures_fn"


@pytest.fixture()
def project(pubsub_emulator):  # noqa: F811 - fixture from tests.emulators
    """A fresh project id per test: the emulator keeps each project's resources apart."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def subscriber(pubsub_emulator):  # noqa: F811
    from google.cloud import pubsub_v1

    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


def _pull_once(subscriber, path: str):
    # return_immediately: the emulator otherwise long-polls ~2-4 s on an empty subscription.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        resp = subscriber.pull(request={"subscription": path, "max_messages": 10, "return_immediately": True},
                               timeout=5)
    return list(resp.received_messages)


def _pull(subscriber, project: str, subscription: str, want: int = 1, timeout: float = 10.0):
    """Pull until `want` messages arrived (a message may be held back by the retry backoff)."""
    path = f"projects/{project}/subscriptions/{subscription}"
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got.extend(_pull_once(subscriber, path))
        if len(got) < want:
            time.sleep(0.05)
    return path, got


def test_ensure_topology_is_idempotent_and_sets_dead_letter_and_retry_policy(project, subscriber):
    from google.cloud import pubsub_v1

    from shared.bus.pubsub import ensure_topology

    first = ensure_topology(project)
    topics = {f"projects/{project}/topics/{t}{dl}" for t in TOPICS for dl in ("", "-dead-letter")}
    assert {TOPIC_RUN_REQUESTS, TOPIC_RUN_COMPLETED, TOPIC_SCHEDULE_TICKS} == set(TOPICS)
    assert set(first.topics) == topics
    assert len(first.created) == 12  # 6 topics + 3 subscriptions + 3 dead-letter subscriptions

    second = ensure_topology(project)
    assert second.created == []
    assert set(second.topics) == topics and set(second.subscriptions) == set(first.subscriptions)

    publisher = pubsub_v1.PublisherClient()
    listed = {t.name for t in publisher.list_topics(request={"project": f"projects/{project}"})}
    assert listed == topics

    for topic in TOPICS:
        sub = subscriber.get_subscription(request={"subscription": f"projects/{project}/subscriptions/{topic}-sub"})
        assert sub.topic == f"projects/{project}/topics/{topic}"
        assert sub.dead_letter_policy.dead_letter_topic == f"projects/{project}/topics/{topic}-dead-letter"
        assert sub.dead_letter_policy.max_delivery_attempts == 5
        assert sub.retry_policy.minimum_backoff.total_seconds() == 10
        assert sub.retry_policy.maximum_backoff.total_seconds() == 600
        assert sub.push_config.push_endpoint == ""  # pull: no endpoint given

    # Re-running with a push endpoint converges the existing subscription to push.
    url = "http://127.0.0.1:9/projects/p/topics/t"
    third = ensure_topology(project, push_endpoints={TOPIC_RUN_COMPLETED: url}, max_delivery_attempts=7)
    assert third.created == []
    sub = subscriber.get_subscription(
        request={"subscription": f"projects/{project}/subscriptions/{TOPIC_RUN_COMPLETED}-sub"})
    assert sub.push_config.push_endpoint == url
    assert sub.dead_letter_policy.max_delivery_attempts == 7


def test_ensure_topology_rejects_bad_arguments(pubsub_emulator):  # noqa: F811
    from shared.bus.pubsub import ensure_topology

    with pytest.raises(ValueError, match="between 5 and 100"):
        ensure_topology("p", max_delivery_attempts=3)
    with pytest.raises(ValueError, match="unknown topics"):
        ensure_topology("p", push_endpoints={"no-such-topic": "http://127.0.0.1:9/"})


def test_publish_then_pull_and_cloud_event_round_trip(project, subscriber):
    from cloudevents.conversion import to_structured
    from cloudevents.http import CloudEvent, from_http

    from shared.bus.pubsub import PubSubBus, ensure_topology

    ensure_topology(project)
    bus = PubSubBus(project)
    payload = {"org_slug": "acme", "run_id": "r-1", "start_date": "2026-01-01", "n": 3, "nested": {"a": [1, 2]}}
    message_id = bus.publish(TOPIC_RUN_REQUESTS, payload, {"org_slug": "acme", "attempt": 1})
    bus.close()
    assert message_id

    path, received = _pull(subscriber, project, f"{TOPIC_RUN_REQUESTS}-sub")
    assert len(received) == 1
    msg = received[0].message
    subscriber.acknowledge(request={"subscription": path, "ack_ids": [received[0].ack_id]})
    assert msg.message_id == message_id
    assert dict(msg.attributes) == {"org_slug": "acme", "attempt": "1"}  # attributes travel as strings

    # The CloudEvent Eventarc would deliver for this message, through the structured wire format.
    ce_attrs, ce_data = cloud_event_parts(project, TOPIC_RUN_REQUESTS, "eventarc-sub", msg.message_id,
                                          msg.data, dict(msg.attributes))
    headers, body = to_structured(CloudEvent(ce_attrs, ce_data))
    event = from_http(headers, body)
    assert event["type"] == PUBLISHED_TYPE
    assert event["source"] == f"//pubsub.googleapis.com/projects/{project}/topics/{TOPIC_RUN_REQUESTS}"
    assert decode(event) == (payload, {"org_slug": "acme", "attempt": "1"}, message_id)


def test_publish_to_missing_topic_fails(project):
    from google.api_core import exceptions as gexc

    from shared.bus.pubsub import PubSubBus

    bus = PubSubBus(project, timeout=10)
    with pytest.raises(gexc.NotFound):
        bus.publish("no-such-topic", {"a": 1})
    bus.close()


def test_nacked_message_goes_to_dead_letter_topic(project, subscriber):
    from shared.bus.pubsub import PubSubBus, ensure_topology

    ensure_topology(project, min_backoff=0, max_backoff=1)
    bus = PubSubBus(project)
    message_id = bus.publish(TOPIC_RUN_COMPLETED, {"run_id": "r-dead"}, {"org_slug": "acme"})
    bus.close()

    attempts = []
    for _ in range(5):  # max_delivery_attempts = 5: nack each delivery
        path, received = _pull(subscriber, project, f"{TOPIC_RUN_COMPLETED}-sub")
        assert len(received) == 1 and received[0].message.message_id == message_id
        attempts.append(received[0].delivery_attempt)
        subscriber.modify_ack_deadline(
            request={"subscription": path, "ack_ids": [received[0].ack_id], "ack_deadline_seconds": 0})
    assert attempts == [1, 2, 3, 4, 5]

    # The emulator forwards the message when it would deliver it a sixth time, i.e. on the next pull.
    main_path = f"projects/{project}/subscriptions/{TOPIC_RUN_COMPLETED}-sub"
    dead_path = f"projects/{project}/subscriptions/{TOPIC_RUN_COMPLETED}-dead-letter-sub"
    dead = []
    deadline = time.monotonic() + 10
    while not dead and time.monotonic() < deadline:
        assert not _pull_once(subscriber, main_path), "delivered a sixth time instead of dead-lettered"
        dead = _pull_once(subscriber, dead_path)
        if not dead:
            time.sleep(0.05)
    assert len(dead) == 1
    assert dead[0].message.data == b'{"run_id": "r-dead"}'
    assert dead[0].message.attributes["org_slug"] == "acme"
    assert dead[0].message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"


@pytest.fixture()
def cloudevent_server():
    """The functions-framework CloudEvent app for tests/fixtures_fn/pubsub_sink.py on a loopback port."""
    import functions_framework
    from werkzeug.serving import make_server

    app = functions_framework.create_app(target="on_message", source=str(FIXTURES_FN / "pubsub_sink.py"),
                                         signature_type="cloudevent")
    sink = sys.modules["pubsub_sink"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="ff-cloudevent", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", sink.RECEIVED
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_push_subscription_delivers_to_cloudevent_function(project, cloudevent_server):
    from shared.bus.pubsub import PubSubBus, ensure_topology

    base_url, received = cloudevent_server
    # The push path names the topic, so functions-framework sets the CloudEvent source as Eventarc does.
    endpoint = f"{base_url}/projects/{project}/topics/{TOPIC_RUN_REQUESTS}"
    ensure_topology(project, push_endpoints={TOPIC_RUN_REQUESTS: endpoint})

    bus = PubSubBus(project)
    payload = {"org_slug": "acme", "pipeline_id": "genai/payg/openai", "run_id": "r-push"}
    message_id = bus.publish(TOPIC_RUN_REQUESTS, payload, {"org_slug": "acme"})
    bus.close()

    got = received.get(timeout=20)
    assert got["payload"] == payload
    assert got["attributes"] == {"org_slug": "acme"}
    assert got["message_id"] == message_id == got["id"]
    assert got["type"] == PUBLISHED_TYPE
    assert got["source"] == f"//pubsub.googleapis.com/projects/{project}/topics/{TOPIC_RUN_REQUESTS}"
