"""Push transitions out as they happen: to a file, a signed webhook or NATS JetStream, durable across restarts.

>>> from sigma_async.relay import FileCursorStore, Relay, WebhookSink
>>> relay = Relay(client, WebhookSink(url, secret=secret), FileCursorStore("cursors.json"), session_ids=ids)
>>> await relay.run()

Receivers check a webhook's ``Sigma-Signature`` with ``verify_signature(body, header, secret)``.
"""

from ._base import (
    ACCEPTED,
    Claims,
    CursorStore,
    Observer,
    Outcome,
    Ownership,
    OwnEverything,
    Sink,
    channel_key,
    parse_key,
    session_key,
)
from ._config import RelayConfig, load_config, open_sink, open_store
from ._nats import NatsCursorStore, NatsSink
from ._records import encode_record, subject_for
from ._relay import Backoff, Relay, RelayStats
from ._signing import SIGNATURE_HEADER, sign, verify_signature
from ._sinks import DeliveryError, FileSink, MemorySink, WebhookSink
from ._stores import FileCursorStore, MemoryCursorStore

__all__ = [
    "ACCEPTED",
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
    "Relay",
    "RelayConfig",
    "RelayStats",
    "Sink",
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
