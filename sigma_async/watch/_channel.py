"""Watching a channel: every session its listing shows, in turn, the ones that came and went between polls included."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from .._protocol import check_id
from ..transitions import Transition
from ._api import WatchClient
from ._engine import Engine
from ._kinds import DEFAULT_TABLE, KindTable
from ._plan import DEFAULT_STATUS_EVERY, check_poll_mode
from ._scheduler import stream
from ._session import check_interval

__all__ = ["watch_channel"]


def watch_channel(
    client: WatchClient,
    channel_id: str,
    *,
    interval: float = 2.0,
    max_silence: float | None = None,
    table: KindTable = DEFAULT_TABLE,
    jitter: float = 0.1,
    first_delay: float = 0.0,
    poll: str = "lean",
    status_every: int = DEFAULT_STATUS_EVERY,
    cursors: Mapping[str, str] | None = None,
    playback: bool = False,
    playback_stall_after: float | None = None,
) -> AsyncGenerator[Transition, None]:
    """Yield the transitions of every session of a channel, for as long as it is iterated.

    The channel's sessions listing (newest ``updatedAt`` first) is read every interval, down to the first row
    that did not change: every session it shows after the watch began is reported, however short and however
    many came and went between two polls, each from its start to ``Ended``. The first read takes up the
    sessions that are not over. With ``cursors`` (session id → cursor, as a relay saves them) it finishes every
    session of this channel that has an unfinished cursor, and reports every session created since the newest
    of them: a restart loses nothing. A channel that does not exist raises ``NotFoundError`` at once; one
    deleted while watched raises it once its sessions have ended.

    ``poll="lean"`` (the default) costs one request per interval while nothing changes: the listing's rows
    carry each session's status, and a session's events are read when its row moved (and at least every
    ``status_every`` intervals). ``poll="full"`` reads every session's status and events every interval.
    ``playback=True`` also judges the channel's HLS output while each session is on air (``PlaybackStalled``,
    ``PlaybackResumed``).
    """
    check_interval(interval, jitter)
    check_poll_mode(poll, feed_allowed=False)
    check_id(channel_id, "channel id")
    engine = Engine(
        client, interval=interval, jitter=jitter, poll="full" if poll == "full" else "lean",
        status_every=status_every, table=table, max_silence=max_silence, stagger=False, first_delay=first_delay,
        cursors=cursors, stay_open=True, playback=playback, playback_stall_after=playback_stall_after,
    )  # fmt: skip
    engine.add_channel(channel_id)
    return stream(engine)
