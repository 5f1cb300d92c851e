"""What the watchers need of a client, as a protocol: the watch layer sits above the client and imports none of it."""

from __future__ import annotations

from typing import Protocol

from ..models import Channel, Event, Page, Session, SessionStatus

__all__ = ["WatchClient"]


class _Channels(Protocol):
    async def get(self, channel_id: str) -> Channel: ...


class _Sessions(Protocol):
    async def list(self, channel_id: str, *, page: int = 1, per_page: int = 100) -> Page[Session]: ...

    async def status(self, session_id: str) -> SessionStatus: ...

    async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Session]: ...


class _Events(Protocol):
    async def list(self, session_id: str, *, page: int = 1, per_page: int = 100) -> Page[Event]: ...

    async def list_app(self, *, page: int = 1, per_page: int = 100) -> Page[Event]: ...


class WatchClient(Protocol):
    """The reads a watch makes: ``SigmaClient`` is one."""

    @property
    def channels(self) -> _Channels: ...

    @property
    def sessions(self) -> _Sessions: ...

    @property
    def events(self) -> _Events: ...
