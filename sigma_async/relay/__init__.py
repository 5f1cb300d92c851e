"""Push transitions out as they happen: to a file, a signed webhook or NATS JetStream, durable across restarts.

>>> from sigma_async.relay import FileCursorStore, Relay, WebhookSink
>>> relay = Relay(client, WebhookSink(url, secret=secret), FileCursorStore("cursors.json"), session_ids=ids)
>>> await relay.run()

Receivers check a webhook's ``Sigma-Signature`` with ``verify_signature(body, header, secret)``; a complete one is
``examples/webhook_receiver.py``.
"""

from ._base import (
    ACCEPTED,
    DONE,
    Claims,
    CursorStore,
    Observer,
    Outcome,
    Ownership,
    OwnEverything,
    SetupError,
    Sink,
    StaleCursorError,
    StoreLostError,
    channel_key,
    parse_key,
    session_key,
)
from ._config import RelayConfig, load_config, open_sink, open_store
from ._deadletter import Rejection
from ._kv import NatsCursorStore
from ._nats import NatsSink
from ._records import encode_record, subject_for
from ._relay import Backoff, Relay, RelayStats
from ._signing import SIGNATURE_HEADER, sign, verify_signature
from ._sinks import REJECTING, DeliveryError, FileSink, MemorySink, StderrSink, WebhookSink
from ._stores import FileCursorStore, MemoryCursorStore

__all__ = [
    "ACCEPTED",
    "DONE",
    "REJECTING",
    "SIGNATURE_HEADER",
    "Backoff",
    "Claims",
    "CursorStore",
    "DeliveryError",
    "FileCursorStore",
    "FileSink",
    "MemoryCursorStore",
    "MemorySink",
    "NatsCursorStore",
    "NatsSink",
    "Observer",
    "Outcome",
    "OwnEverything",
    "Ownership",
    "Rejection",
    "Relay",
    "RelayConfig",
    "RelayStats",
    "SetupError",
    "Sink",
    "StaleCursorError",
    "StderrSink",
    "StoreLostError",
    "WebhookSink",
    "channel_key",
    "encode_record",
    "load_config",
    "open_sink",
    "open_store",
    "parse_key",
    "session_key",
    "sign",
    "subject_for",
    "verify_signature",
]
