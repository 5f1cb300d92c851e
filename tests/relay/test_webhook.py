"""The webhook sink against a real receiver on loopback: signatures, retries, rejections, secrets kept out."""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from aiohttp import web

from sigma_async.relay import MemoryCursorStore, Relay, WebhookSink, verify_signature
from sigma_async.testing import Emulator

from ._support import by_session, live_session, no_wait, run_course, server_event_ids
from .test_relay import assert_in_order_once

SECRET = "whsec-NEVER-LOGGED"


@dataclass
class Receiver:
    """A webhook endpoint: ``answer(record)`` picks the status; every request and acceptance is kept."""

    answer: Callable[[dict[str, Any]], int] = lambda record: 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        record = json.loads(body)
        status = self.answer(record)
        if status == 200:
            self.accepted.append(record)
        headers = {"Retry-After": "1"} if status == 429 else {}
        return web.Response(status=status, text="no" if status >= 300 else "ok", headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/sigma", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hooks/sigma?token=q-TOKEN"
    yield rec
    await runner.cleanup()


async def relay_sessions(emu: Emulator, sink: WebhookSink, count: int, **kw: Any) -> tuple[Relay, list[str]]:
    pairs = [live_session(emu, f"hook-{i}") for i in range(count)]
    async with emu.client() as client:
        relay = Relay(client, sink, MemoryCursorStore(), session_ids=[s for _, s in pairs], interval=0.02, **kw)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                for channel_id, _ in pairs:
                    run_course(emu, channel_id)
    return relay, [s for _, s in pairs]


async def test_a_receiver_failing_a_quarter_of_deliveries_gets_each_event_once_in_order(
    emu: Emulator, receiver: Receiver
) -> None:
    rng = random.Random(12)
    receiver.answer = lambda record: 500 if rng.random() < 0.25 else 200
    relay, sessions = await relay_sessions(emu, WebhookSink(receiver.url, secret=SECRET), 3, sleep=no_wait)

    assert relay.stats.retried > 0, "the receiver did fail some deliveries"
    assert len(receiver.requests) == len(receiver.accepted) + relay.stats.retried
    ids = Counter(r["id"] for r in receiver.accepted)
    assert all(ids) and set(ids.values()) == {1}, "each transition accepted exactly once"
    grouped = by_session(receiver.accepted)
    for sid in sessions:
        assert_in_order_once(grouped[sid])
        assert {r["event"]["id"] for r in grouped[sid] if r["event"]} == server_event_ids(emu, sid)
    for headers, body in receiver.requests:
        assert verify_signature(body, headers["Sigma-Signature"], SECRET), "every attempt is signed"
        assert headers["Content-Type"] == "application/json"
        assert headers["Sigma-Delivery-Id"] == json.loads(body)["id"]


async def test_a_record_the_receiver_refuses_is_skipped_and_the_session_goes_on(
    emu: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer = lambda record: 400 if record["kind"] == "interrupted" else 200
    with caplog.at_level(logging.WARNING, logger="sigma_async"):
        relay, _ = await relay_sessions(emu, WebhookSink(receiver.url), 1, sleep=no_wait)
    kinds = [r["kind"] for r in receiver.accepted]
    assert "interrupted" not in kinds and kinds[-1] == "ended" and "restored" in kinds
    assert relay.stats.rejected == 1 and relay.stats.retried == 0
    assert sum(1 for headers, _ in receiver.requests if "Sigma-Signature" not in headers) == len(receiver.requests)
    assert "answered 400" in caplog.text and "skipped" in caplog.text
    assert "q-TOKEN" not in caplog.text, "the URL's query (a token) is never logged"


@pytest.mark.parametrize("status", [408, 429, 503, 302])
async def test_answers_that_mean_later_are_retried(emu: Emulator, receiver: Receiver, status: int) -> None:
    failed: set[str] = set()

    def answer(record: dict[str, Any]) -> int:
        if record["id"] in failed:
            return 200
        failed.add(record["id"])
        return status

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    receiver.answer = answer
    relay, _ = await relay_sessions(emu, WebhookSink(receiver.url), 1, sleep=sleep)
    assert len(receiver.accepted) == len(failed) == relay.stats.retried
    assert relay.stats.rejected == 0
    if status == 429:
        assert min(waits) >= 1.0, "the receiver's Retry-After is a floor for the wait"


async def test_an_unreachable_receiver_is_retried_without_its_url_query_in_the_log(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    _, sid = live_session(emu)
    attempts = 0
    sink = WebhookSink("http://127.0.0.1:9/hooks?token=q-TOKEN", secret=SECRET, timeout=2)

    async def sleep(seconds: float) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 3:
            relay.stop()  # nobody listens on the discard port: stop after a few tries
        await anyio.lowlevel.checkpoint()

    async with emu.client() as client:
        relay = Relay(client, sink, session_ids=[sid], interval=0.02, sleep=sleep)
        with caplog.at_level(logging.DEBUG, logger="sigma_async"), anyio.fail_after(20):
            await relay.run()
    assert relay.stats.retried >= 3 and relay.stats.delivered == 0
    assert "not delivered" in caplog.text
    assert "q-TOKEN" not in caplog.text and SECRET not in caplog.text
    assert "q-TOKEN" not in repr(sink) and SECRET not in repr(sink)


def test_a_webhook_needs_an_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://example.com/x?token=q-TOKEN")
