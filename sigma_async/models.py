"""Typed models of the Sigma Livestream API: ``msgspec.Struct`` with snake_case attributes, camelCase on the wire.

Enum-like fields (``status``, ``action``, ``type``, ``mode``) are plain ``str`` so that a value the vendor adds
tomorrow decodes today; the known values are listed as constants. Unknown fields are ignored.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import msgspec

__all__ = [
    "DEFAULT_PROFILES",
    "PROFILE_1080P",
    "PROFILE_480P",
    "PROFILE_720P",
    "SIGMA_MACHINE_ID",
    "SIGMA_MACHINE_TYPE",
    "CatchupDestination",
    "Channel",
    "ChannelCreate",
    "ChannelCreateBody",
    "ChannelInput",
    "ClientInfo",
    "Event",
    "EventAction",
    "Machine",
    "Page",
    "S3Destination",
    "Session",
    "SessionStatus",
    "Status",
    "catchup_playlist_url",
]

T = TypeVar("T")

#: Transcode profile ids of the vendor's example body, in the order the page lists them (1080p, 720p, 480p).
PROFILE_1080P = "fbffbd08-ed7f-4a51-aabd-3132ac863bb5"
PROFILE_720P = "54a3d4db-a827-45ae-b6be-1faa21c2e7c6"
PROFILE_480P = "33a26869-0a1b-49a4-8303-1284ac8fd034"
DEFAULT_PROFILES = (PROFILE_1080P, PROFILE_720P, PROFILE_480P)
#: The shared transcoding machine of the vendor's example body.
SIGMA_MACHINE_ID = "94e98078-b9cb-4d44-b16e-369fdb81da35"
SIGMA_MACHINE_TYPE = "SIGMA_MACHINE"

_REDACTED = "***"


class Status:
    """Session statuses seen on the API page and in its prose. Others may appear; they stay plain strings."""

    INITIALIZING = "initializing"
    STARTED = "started"
    LIVE = "live"
    STABLE = "stable"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    ENDED = "ended"


class EventAction:
    """Event actions named on the API page. Others may appear; they stay plain strings."""

    INITIALIZE = "initialize"
    START = "start"
    STABLE = "stable"
    SIGNAL_INTERRUPTED = "signal_interrupted"
    SIGNAL_RESTORED = "signal_restored"
    STOP = "stop"
    ENDED = "ended"


class S3Destination(msgspec.Struct, rename="camel", omit_defaults=False):
    """An S3-compatible bucket for catchup recordings. ``repr`` hides ``secret_key``."""

    access_key: str
    bucket: str
    endpoint: str
    secret_key: str
    region: str
    segment_prefix: str | None = None

    def __repr__(self) -> str:
        return (
            f"S3Destination(access_key={self.access_key!r}, bucket={self.bucket!r}, "
            f"endpoint={self.endpoint!r}, secret_key={_REDACTED!r}, region={self.region!r}, "
            f"segment_prefix={self.segment_prefix!r})"
        )

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec's own __rich_repr__ walks the raw fields and would print the secret.
        return _redacted_fields(self, "secret_key")


class CatchupDestination(msgspec.Struct, rename="camel"):
    """The wire form of a catchup destination: ``{"type": "s3", "s3": {...}}``."""

    type: str = "s3"
    s3: S3Destination | None = None


class Machine(msgspec.Struct, rename="camel"):
    enabled: bool = True
    machine_id: str | None = SIGMA_MACHINE_ID
    machine_type: str | None = SIGMA_MACHINE_TYPE


class ChannelCreateBody(msgspec.Struct, rename="camel", omit_defaults=True):
    """The exact JSON body of ``POST /api/livestream/channels``. Build it with ``ChannelCreate``."""

    name: str
    description: str | None
    tags: list[str]
    transcode_profile: list[str]
    type: str
    mode: str
    stop_timeout: int
    catchup: bool
    record: bool
    output_format: str
    machine: Machine
    destination_catchup: CatchupDestination | None = None


class ChannelCreate(msgspec.Struct, kw_only=True):
    """What to create. The defaults reproduce the API page's example body.

    >>> ChannelCreate(name="news")                     # 1080p/720p/480p, ultra-low-latency, HLS, no catchup
    >>> ChannelCreate(name="news", destination_catchup=S3Destination(...))   # catchup defaults to True
    """

    name: str
    description: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    transcode_profile: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_PROFILES))
    type: str = "transcode"
    mode: str = "ultra-low-latency"
    stop_timeout: int = 30
    catchup: bool | None = None
    record: bool = False
    output_format: str = "hls"
    machine: Machine = msgspec.field(default_factory=Machine)
    destination_catchup: S3Destination | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("channel name must be a non-empty string")
        if not all(isinstance(t, str) for t in self.tags):
            raise ValueError("tags must be strings")
        if not self.transcode_profile:
            raise ValueError("transcode_profile must name at least one profile")
        if isinstance(self.stop_timeout, bool) or not isinstance(self.stop_timeout, int) or self.stop_timeout < 0:
            raise ValueError("stop_timeout must be a non-negative number of seconds")
        if self.catchup and self.destination_catchup is None:
            raise ValueError("catchup=True needs a destination_catchup")

    def to_body(self) -> ChannelCreateBody:
        """The wire body, with ``destination_catchup`` wrapped as the API expects."""
        dest = self.destination_catchup
        return ChannelCreateBody(
            name=self.name,
            description=self.description,
            tags=list(self.tags),
            transcode_profile=list(self.transcode_profile),
            type=self.type,
            mode=self.mode,
            stop_timeout=self.stop_timeout,
            catchup=self.catchup if self.catchup is not None else dest is not None,
            record=self.record,
            output_format=self.output_format,
            machine=self.machine,
            destination_catchup=CatchupDestination(type="s3", s3=dest) if dest is not None else None,
        )


class ChannelInput(msgspec.Struct, rename="camel"):
    """Where a publisher pushes: ``rtmp_server`` and the stream key ``stream_token`` (hidden in ``repr``)."""

    stream_token: str | None = None
    rtmp_server: str | None = None

    @property
    def publish_url(self) -> str | None:
        """The full RTMP URL an encoder pushes to (server + stream key), or None if either is unknown."""
        if not self.rtmp_server or not self.stream_token:
            return None
        return f"{self.rtmp_server.rstrip('/')}/{self.stream_token}"

    def __repr__(self) -> str:
        token = None if self.stream_token is None else _REDACTED
        return f"ChannelInput(stream_token={token!r}, rtmp_server={self.rtmp_server!r})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return _redacted_fields(self, "stream_token")


class Channel(msgspec.Struct, rename="camel"):
    """A live transcode channel as the API returns it."""

    id: str
    name: str = ""
    description: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    app_id: str | None = None
    input_id: str | None = None
    transcode_profile: list[Any] = msgspec.field(default_factory=list)
    type: str | None = None
    mode: str | None = None
    stop_timeout: int | None = None
    catchup: bool | None = None
    destination_catchup: CatchupDestination | None = None
    record: bool | None = None
    output_format: str | None = None
    status: str | None = None
    machine: Machine | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    current_session_id: str | None = None
    input: ChannelInput = msgspec.field(default_factory=ChannelInput)
    live_stream_url: str | None = None


class ClientInfo(msgspec.Struct):
    """The publisher's connection, with the wire's own mixed-case keys (``client_id``, ``tcUrl``)."""

    action: str | None = None
    stream: str | None = None
    ip: str | None = None
    client_id: str | None = None
    param: str | None = None
    tc_url: str | None = msgspec.field(default=None, name="tcUrl")
    ips: list[str] = msgspec.field(default_factory=list)
    app: str | None = None
    stream_id: str | None = None

    def __repr__(self) -> str:
        # ``stream`` and ``param`` carry the stream key and any query the encoder sent.
        return (
            f"ClientInfo(action={self.action!r}, ip={self.ip!r}, client_id={self.client_id!r}, "
            f"app={self.app!r}, stream_id={self.stream_id!r})"
        )

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return _redacted_fields(self, "stream", "param")


class Event(msgspec.Struct, rename="camel"):
    """One thing that happened to a session (``action``: stable, ended, ...)."""

    id: str
    action: str
    created_at: datetime
    session_id: str | None = None
    actor: str | None = None
    message: str | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        # A timestamp without a zone is UTC: compared with zoned ones it would otherwise raise TypeError.
        if self.created_at.tzinfo is None:
            self.created_at = self.created_at.replace(tzinfo=timezone.utc)
        if self.updated_at is not None and self.updated_at.tzinfo is None:
            self.updated_at = self.updated_at.replace(tzinfo=timezone.utc)


class Session(msgspec.Struct, rename="camel"):
    """One live session of a channel: from start to end."""

    id: str = ""
    name: str = ""
    status: str | None = None
    app_id: str | None = None
    record_urls: list[str] = msgspec.field(default_factory=list)
    client_info: ClientInfo | None = None
    duration: float | None = None
    is_create_task: bool | None = None
    channel_id: str | None = None
    channel: Channel | None = None
    events: list[Event] = msgspec.field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class SessionStatus(msgspec.Struct):
    """``GET /sessions/{id}/status``: ``{"status": "live"}``."""

    status: str


class Page(msgspec.Struct, Generic[T], rename="camel"):
    """One page of a listing. ``total`` is the server's count of all items, ``count`` of this page's.

    ``data`` is required: an answer without it (an error envelope sent with a 200, say) is not a page, and reads
    as a ``ResponseDecodeError`` rather than as an empty listing.
    """

    data: list[T]
    total: int | None = None
    count: int | None = None
    page: int | None = None
    per_page: int | None = None


def catchup_playlist_url(s3_base: str, session_id: str) -> str:
    """The catchup (VOD) master playlist of a session recorded to S3.

    ``s3_base`` is the public base URL of the bucket, e.g. ``https://s3.example.com/my-bucket``; the API page
    gives the layout ``<s3>/sigma-livestream/<session_id>/catchup/master-catchup.m3u8``.

    >>> catchup_playlist_url("https://s3.example.com/b/", "977cc345")
    'https://s3.example.com/b/sigma-livestream/977cc345/catchup/master-catchup.m3u8'
    """
    if not s3_base:
        raise ValueError("s3_base must be the bucket's base URL")
    if not session_id or "/" in session_id or session_id in (".", ".."):
        raise ValueError(f"not a session id: {session_id!r}")
    return f"{s3_base.rstrip('/')}/sigma-livestream/{session_id}/catchup/master-catchup.m3u8"


def _redacted_fields(obj: msgspec.Struct, *secret: str) -> list[tuple[str, Any]]:
    pairs = ((name, getattr(obj, name)) for name in obj.__struct_fields__)
    return [(name, _REDACTED if name in secret and value is not None else value) for name, value in pairs]
