"""A CloudEvent function for the Pub/Sub push test: decodes the message as the real subscribers do.

functions-framework loads this file as the top-level module `pubsub_sink`; the test reads
`RECEIVED` from `sys.modules["pubsub_sink"]`.
"""
import queue

import functions_framework

from shared.bus.base import decode

RECEIVED: "queue.Queue[dict]" = queue.Queue()


@functions_framework.cloud_event
def on_message(cloud_event):
    payload, attributes, message_id = decode(cloud_event)
    RECEIVED.put({
        "payload": payload,
        "attributes": attributes,
        "message_id": message_id,
        "type": cloud_event["type"],
        "source": cloud_event["source"],
        "id": cloud_event["id"],
    })
