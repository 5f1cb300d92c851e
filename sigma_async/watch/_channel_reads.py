"""What a read of a followed channel does: its sessions listing sorted into rows that moved and sessions to take
up, the sessions its cursors left unfinished, and its deletion. The engine's claims are in ``_engine``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._protocol import check_id
from ..errors import NotFoundError, SigmaError, WatchError
from ..models import Session
from ._cursor import decode_cursor
from ._items import Row, WatchedChannel, WatchedSession
from ._reads import read_listing

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["channel_deleted", "cursors_of", "poll_channel", "row_moved", "take_up"]


async def poll_channel(engine: Engine, channel: WatchedChannel) -> None:
    view = channel.view
    began = engine.now()

    async def reads() -> Any:
        if view.check_due(engine.status_every):
            await engine.client.channels.get(view.channel_id)  # 404: the channel does not exist, or no more
        return await read_listing(engine.client, view.start_read())

    try:
        read = await engine.guarded(channel, reads())
    except SigmaError as exc:
        channel.busy = False
        if isinstance(exc, NotFoundError) and view.looked:
            channel_deleted(engine, channel, exc)
        else:
            engine.failed(channel, exc)
        return
    channel.busy = False
    if not channel.alive:
        return
    answered = engine.clock.wall()
    channel.succeeded(engine.now())
    cid = view.channel_id
    new, moved = view.sort_out(read, lambda sid: sid in engine.sessions and cid in engine.sessions[sid].channels)
    for row in moved:
        row_moved(engine, engine.sessions[row.id], row, answered)
    for row in new:
        try:
            _server_id(row.id, cid)
        except WatchError as exc:
            engine.give_up_and_report(channel, exc)
            return
        take_up(engine, cid, row.id, since=engine.cursors.get(row.id), row=row, row_at=answered)
    channel.read_began = began
    if engine.tombstones:
        # A session gone before a read of every channel began was in that read, if it was to be listed at all.
        oldest = min(c.read_began for c in engine.channels.values())
        engine.tombstones = {sid: at for sid, at in engine.tombstones.items() if at >= oldest}
    engine.schedule(channel, engine.now() + engine.jittered(engine.interval))


def take_up(
    engine: Engine,
    channel_id: str,
    session_id: str,
    *,
    since: str | None,
    row: Session | None,
    row_at: datetime | None = None,
) -> None:
    if session_id in engine.tombstones:
        return  # reported (or removed) directly before any channel claimed it: once is enough
    watched = engine.sessions.get(session_id)
    if watched is not None:
        if channel_id not in watched.channels:
            watched.channels += (channel_id,)
        if watched.tracker.channel_id is None:
            watched.tracker.channel_id = channel_id
        if row is not None:
            row_moved(engine, watched, row, row_at)
        return
    try:
        tracker = engine.new_tracker(
            session_id, since=since, channel_id=channel_id, created_at=row.created_at if row is not None else None
        )
    except ValueError as exc:  # a cursor learned since the watch began, and damaged: that session alone fails
        engine.report(session_id, WatchError(f"session {session_id}: its cursor: {exc}"))
        return
    if tracker.ended:
        return
    watched = WatchedSession(tracker, engine.new_plan(by_row=True), direct=False, channel=channel_id)
    watched.row, watched.row_at = (Row.of(row) if row is not None else None), row_at
    engine.register(watched, engine.now())


def row_moved(engine: Engine, watched: WatchedSession, row: Session, row_at: datetime | None) -> None:
    watched.row, watched.row_at = Row.of(row), row_at
    if watched.plan.by_row or watched.plan.mode == "fed":
        watched.row_moved = True
        if not watched.busy:
            engine.schedule(watched, engine.now())


def cursors_of(
    cursors: Mapping[str, str], channel_id: str
) -> tuple[datetime | None, frozenset[str], list[tuple[str, str]]]:
    """From the cursors: the newest ``createdAt`` among the channel's sessions and which sessions were created
    then, and the sessions left unfinished."""
    newest: datetime | None = None
    at_newest: set[str] = set()
    unfinished: list[tuple[str, str]] = []
    for session_id, cursor in cursors.items():
        try:
            c = decode_cursor(cursor, session_id)
        except ValueError as exc:
            # Now, at the call, rather than later inside the running watch.
            raise ValueError(f"cursors[{session_id!r}]: {exc}") from exc
        if c.c != channel_id:
            continue
        if c.ca is not None:
            if newest is None or c.ca > newest:
                newest, at_newest = c.ca, {session_id}
            elif c.ca == newest:
                at_newest.add(session_id)
        if c.k != "ended":
            unfinished.append((session_id, cursor))
    if newest is None and unfinished:
        newest = datetime.min.replace(tzinfo=timezone.utc)
    return newest, frozenset(at_newest), unfinished


def channel_deleted(engine: Engine, channel: WatchedChannel, exc: SigmaError) -> None:
    # Its open session was ended by the deletion: let the sessions it reports reach their Ended first.
    channel.gone = exc
    if not engine.claims_of(channel.ident):
        engine.channel_over(channel)


def _server_id(session_id: str, channel_id: str) -> str:
    # An id from the server goes into the next URL: one that is not a plain path segment ends this watch with a
    # SigmaError (the monitor's on_error hears of it), never a bare ValueError that would end every watch.
    try:
        return check_id(session_id, "session id")
    except ValueError as exc:
        raise WatchError(f"channel {channel_id}: the server named a malformed session id {session_id[:40]!r}") from exc
