"""The emulator's records of channels and sessions, and how each is shown on the wire."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import datetime

from ..models import Channel, ChannelCreateBody, ChannelInput, ClientInfo, Event, Session

__all__ = ["RTMP_SERVER", "ChannelState", "SessionState", "publisher_info", "uuid4_from"]

RTMP_SERVER = "rtmp://127.0.0.1:1935/livestream"
# The variant (10xx) and version (0100) bits of a version-4 UUID, as ``uuid.UUID(int=..., version=4)`` sets them.
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_V4 = (0x8000 << 48) | (4 << 76)
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(eq=False)
class ChannelState:
    """One emulated channel: what it was created with, plus what the server adds."""

    id: str
    spec: ChannelCreateBody
    app_id: str
    input_id: str
    stream_token: str
    live_stream_url: str
    created_at: datetime
    updated_at: datetime
    current_session_id: str | None = None
    session_ids: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stop_timeout(self) -> float:
        return float(self.spec.stop_timeout)

    def to_model(self) -> Channel:
        spec = self.spec
        return Channel(
            id=self.id,
            name=spec.name,
            description=spec.description,
            tags=list(spec.tags),
            app_id=self.app_id,
            input_id=self.input_id,
            transcode_profile=list(spec.transcode_profile),
            type=spec.type,
            mode=spec.mode,
            stop_timeout=spec.stop_timeout,
            catchup=spec.catchup,
            destination_catchup=spec.destination_catchup,
            record=spec.record,
            output_format=spec.output_format,
            status="active",
            machine=spec.machine,
            created_at=self.created_at,
            updated_at=self.updated_at,
            current_session_id=self.current_session_id,
            input=ChannelInput(stream_token=self.stream_token, rtmp_server=RTMP_SERVER),
            live_stream_url=self.live_stream_url,
        )


@dataclass(eq=False)
class SessionState:
    """One emulated live session and the publisher feeding it."""

    id: str
    channel: ChannelState
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    client_info: ClientInfo | None = None
    events: list[Event] = field(default_factory=list)
    publisher_connected: bool = False
    signal_ok: bool = False
    #: When the session ends by itself: ``stopTimeout`` after the signal was lost. None while it is healthy.
    deadline: datetime | None = None

    @property
    def channel_id(self) -> str:
        return self.channel.id

    @property
    def app_id(self) -> str:
        return self.channel.app_id

    @property
    def ended(self) -> bool:
        return self.finished_at is not None

    @property
    def duration(self) -> int | None:
        """Whole seconds from start (or creation, if no publisher ever came) to finish, as the API reports."""
        if self.finished_at is None:
            return None
        return round((self.finished_at - (self.started_at or self.created_at)).total_seconds())

    def to_model(self) -> Session:
        return Session(
            id=self.id,
            name=self.name,
            status=self.status,
            app_id=self.app_id,
            record_urls=[],
            client_info=self.client_info,
            duration=self.duration,
            is_create_task=True,
            channel_id=self.channel_id,
            channel=self.channel.to_model(),
            events=[],
            created_at=self.created_at,
            updated_at=self.updated_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


def uuid4_from(rng: random.Random) -> str:
    """A version-4 UUID from ``rng``: ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, spelled out, since a
    hundred thousand sessions make over half a million of them."""
    bits = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_V4
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def publisher_info(rng: random.Random, channel: ChannelState) -> ClientInfo:
    """What the API shows of the encoder that connected to ``channel``."""
    return ClientInfo(
        action="on_publish",
        stream=channel.stream_token,
        ip="127.0.0.1",
        client_id="".join(rng.choices(_ALPHABET, k=8)),
        param="",
        tc_url=RTMP_SERVER,
        ips=[],
        app="livestream",
        stream_id="vid-" + "".join(rng.choices(_ALPHABET, k=7)),
    )
