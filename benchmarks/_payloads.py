"""Realistic response bodies (a channel, a page of sessions), made by the emulator's own state so they cannot drift."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from functools import cache
from typing import Final

import msgspec

from sigma_async.models import ChannelCreate, Page, S3Destination
from sigma_async.testing import Clock, EmulatorState

__all__ = ["CHANNEL_ID", "SESSION_PAGE_SIZE", "channel_body", "create_body", "session_page_body"]

SESSION_PAGE_SIZE: Final = 100
#: The id the throughput clients ask for; the canned server answers any id with the same body.
CHANNEL_ID: Final = "5017085c-d828-491d-837f-2152f1c41b0d"
_START: Final = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


@cache
def _state(sessions: int) -> EmulatorState:
    # Seeded and on a manual clock: every process that builds these bodies builds the same bytes.
    clock = Clock(start=_START, manual=True)
    state = EmulatorState(clock, app_id="bench-app", rng=random.Random(20240501))
    spec = ChannelCreate(
        name="news",
        tags=["bench", "vod"],
        destination_catchup=S3Destination(
            access_key="AKIAEXAMPLE", bucket="catchup", endpoint="https://s3.example.com",
            secret_key="not-a-real-secret", region="ap-southeast-1",
        ),
    ).to_body()
    channel = state.create_channel(spec)
    # Each session lives a full life (start, live, stable, stop, ended) so the page carries client_info,
    # a nested channel and every timestamp, as a real listing does.
    for _ in range(sessions):
        state.start_channel(channel.id)
        state.connect_publisher(channel.id)
        clock.advance(60)
        state.stop_channel(channel.id)
        clock.advance(1)
    return state


def channel_body() -> bytes:
    """One channel with a catchup destination and a current session, as ``GET /channels/{id}`` returns it."""
    state = _state(1)
    model = next(iter(state.channels.values())).to_model()
    session_id = next(iter(state.sessions))
    return msgspec.json.encode(msgspec.structs.replace(model, id=CHANNEL_ID, current_session_id=session_id))


def create_body() -> bytes:
    """What ``POST /channels`` answers: the new channel."""
    return channel_body()


def session_page_body(size: int = SESSION_PAGE_SIZE) -> bytes:
    """A page of ``size`` sessions of one channel, newest first, as ``GET /sessions`` returns it."""
    state = _state(size)
    items = sorted(state.sessions.values(), key=lambda s: s.updated_at, reverse=True)
    page = Page(data=[s.to_model() for s in items], total=size * 3, count=size, page=1, per_page=size)
    return msgspec.json.encode(page)
