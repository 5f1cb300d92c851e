"""Helpers for the relay tests: sinks that fail on cue, sessions that run their course, record checks."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.lowlevel

from sigma_async.relay import ACCEPTED, Outcome
from sigma_async.testing import Emulator
from sigma_async.transitions import Transition

__all__ = ["ScriptedSink", "by_session", "live_session", "no_wait", "run_course", "server_event_ids"]


async def no_wait(seconds: float) -> None:
    """The relay's injected sleep: retry backoff takes no time, but still yields to the loop."""
    await anyio.lowlevel.checkpoint()


class ScriptedSink:
    """Accepts records unless ``decide(transition, attempt)`` says otherwise: an Outcome, or an exception to raise."""

    def __init__(self, decide: Callable[[Transition, int], Outcome | Exception | None] | None = None) -> None:
        self.decide = decide
        self.attempts: dict[str, int] = defaultdict(int)
        self.accepted: list[dict[str, Any]] = []
        self.closed = False

    async def deliver(self, record: bytes, transition: Transition) -> Outcome:
        self.attempts[transition.id] += 1
        verdict = self.decide(transition, self.attempts[transition.id]) if self.decide else None
        if isinstance(verdict, Exception):
            raise verdict
        if verdict is not None and not verdict.accepted:
            return verdict
        self.accepted.append(json.loads(record))
        return ACCEPTED

    async def aclose(self) -> None:
        self.closed = True


def live_session(emu: Emulator, name: str = "relay") -> tuple[str, str]:
    """A started channel whose session is live: (channel id, session id)."""
    channel = emu.create_channel(name)
    session = emu.start_channel(channel.id)
    emu.connect_publisher(channel.id)
    return channel.id, session.id


def run_course(emu: Emulator, channel_id: str) -> None:
    """Signal lost and back, then the channel stopped: the session ends."""
    emu.interrupt_signal(channel_id)
    emu.restore_signal(channel_id)
    emu.stop_channel(channel_id)


def by_session(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["session_id"]].append(record)
    return dict(grouped)


def server_event_ids(emu: Emulator, session_id: str) -> set[str]:
    return {event.id for event in emu.sessions[session_id].events}
