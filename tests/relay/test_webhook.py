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

from sigma_async.relay import DONE, FileCursorStore, MemoryCursorStore, MemorySink, Relay, WebhookSink, verify_signature
from sigma_async.relay._http import _seconds
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
    body: str = "no"
    retry_after: str | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        record = json.loads(body)
        status = self.answer(record)
        if status == 200:
            self.accepted.append(record)
        headers = {"Retry-After": "1"} if status == 429 else {}
        if self.retry_after is not None and status >= 300:
            headers = {"Retry-After": self.retry_after}
        return web.Response(status=status, text=self.body if status >= 300 else "ok", headers=headers)


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
    store = kw.pop("store", None) or MemoryCursorStore()
    async with emu.client() as client:
        relay = Relay(client, sink, store, session_ids=[s for _, s in pairs], interval=0.02, **kw)
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


@pytest.mark.parametrize("status", [400, 409, 410, 413, 422])
async def test_a_record_the_receiver_rejects_goes_to_the_dead_letter_with_its_answer_and_the_session_goes_on(
    emu: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    receiver.answer = lambda record: status if record["kind"] == "interrupted" else 200
    receiver.body = "x" * 150 + "é" * 100  # 350 bytes: the dead-letter keeps the first 200
    dead_letter, store = MemorySink(), MemoryCursorStore()
    with caplog.at_level(logging.WARNING, logger="sigma_async"):
        relay, (sid,) = await relay_sessions(
            emu, WebhookSink(receiver.url), 1, sleep=no_wait, dead_letter=dead_letter, store=store
        )
    kinds = [r["kind"] for r in receiver.accepted]
    assert "interrupted" not in kinds and kinds[-1] == "ended" and "restored" in kinds
    assert relay.stats.rejected == 1 and relay.stats.retried == 0 and relay.stats.dead_lettered == 1
    (entry,) = [json.loads(r) for r in dead_letter.records]
    rejected = next(json.loads(body) for _, body in receiver.requests if json.loads(body)["kind"] == "interrupted")
    assert entry["record"] == rejected and entry["id"] == rejected["id"] and entry["session_id"] == sid
    assert entry["status"] == status and entry["kind"] == "interrupted"
    assert entry["answer"] == ("x" * 150 + "é" * 25), "the first 200 bytes of the receiver's answer"
    assert "q-TOKEN" not in json.dumps(entry) and "q-TOKEN" not in caplog.text, "the URL's query is never shown"
    assert f"answered {status}" in caplog.text and "dead-letter" in caplog.text
    assert store.cursors[sid] == DONE, "the session went on to its end"


async def test_without_a_dead_letter_a_rejected_record_is_logged_whole(
    emu: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer = lambda record: 422 if record["kind"] == "interrupted" else 200
    with caplog.at_level(logging.WARNING, logger="sigma_async"):
        relay, _ = await relay_sessions(emu, WebhookSink(receiver.url, secret=SECRET), 1, sleep=no_wait)
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    entry = json.loads(logged.getMessage().partition("rejected record: ")[2])
    assert entry["status"] == 422 and entry["record"]["kind"] == "interrupted"
    assert relay.stats.rejected == 1


@pytest.mark.parametrize("status", [401, 403, 404, 408, 429, 500, 503, 302])
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
    assert relay.stats.failures == {str(status): len(failed)}, "each failed attempt counted by the receiver's status"
    if status == 429:
        assert min(waits) >= 1.0, "the receiver's Retry-After is a floor for the wait"


async def test_a_receiver_answering_401_for_a_while_loses_nothing_and_is_warned_of_once(
    emu: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    outage = {"on": True}
    receiver.answer = lambda record: 401 if outage["on"] else 200

    async def sleep(seconds: float) -> None:
        if len(receiver.requests) >= 30:
            outage["on"] = False  # the operator fixed the secret
        await anyio.lowlevel.checkpoint()

    with caplog.at_level(logging.INFO, logger="sigma_async"):
        relay, sessions = await relay_sessions(emu, WebhookSink(receiver.url, secret=SECRET), 3, sleep=sleep)
    grouped = by_session(receiver.accepted)
    for sid in sessions:
        assert_in_order_once(grouped[sid])
        assert {r["event"]["id"] for r in grouped[sid] if r["event"]} == server_event_ids(emu, sid)
    assert relay.stats.rejected == 0 and relay.stats.failures["401"] >= 30 and relay.stats.outages == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "answered 401" in warnings[0] and "secret" in warnings[0], warnings
    assert any("accepts again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


async def test_records_refused_for_a_wrong_secret_are_sent_again_by_a_restart_with_the_right_one(
    emu: Emulator, receiver: Receiver, tmp_path: Any
) -> None:
    def answer(record: dict[str, Any]) -> int:
        headers, body = receiver.requests[-1]
        return 200 if verify_signature(body, headers.get("Sigma-Signature"), SECRET) else 401

    receiver.answer = answer
    pairs = [live_session(emu, f"secret-{i}") for i in range(2)]
    sessions = [s for _, s in pairs]
    cursors = tmp_path / "cursors.json"
    async with emu.client() as client:
        wrong = Relay(client, WebhookSink(receiver.url, secret="an-old-secret"), FileCursorStore(cursors),
                      session_ids=sessions, interval=0.02, sleep=no_wait)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(wrong.run)
                for channel_id, _ in pairs:
                    run_course(emu, channel_id)
                await emu.wait_for(lambda: len(receiver.requests) >= 40, timeout=20)
                wrong.stop()
        assert receiver.accepted == [] and wrong.stats.rejected == 0
        assert not cursors.exists() or json.loads(cursors.read_text()) == {}, "no cursor moved past a refused record"

        right = Relay(client, WebhookSink(receiver.url, secret=SECRET), FileCursorStore(cursors),
                      session_ids=sessions, interval=0.02, sleep=no_wait)
        with anyio.fail_after(30):
            await right.run()
    grouped = by_session(receiver.accepted)
    for sid in sessions:
        assert_in_order_once(grouped[sid])
        assert {r["event"]["id"] for r in grouped[sid] if r["event"]} == server_event_ids(emu, sid)


async def test_a_retry_after_that_is_no_number_counts_as_no_header(
    emu: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    failed: set[str] = set()

    def answer(record: dict[str, Any]) -> int:
        if record["id"] in failed:
            return 200
        failed.add(record["id"])
        return 503

    receiver.answer, receiver.retry_after = answer, "²"  # str.isdigit() says yes; float() says no
    with caplog.at_level(logging.DEBUG, logger="sigma_async"):
        relay, _ = await relay_sessions(emu, WebhookSink(receiver.url, secret=SECRET), 1, sleep=no_wait)
    assert "ValueError" not in caplog.text and "answered 503" in caplog.text
    assert relay.stats.failures == {"503": len(failed)}


def test_retry_after_reads_seconds_and_http_dates_and_nothing_else() -> None:
    assert _seconds("7") == 7.0 and _seconds(" 12 ") == 12.0
    assert _seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert _seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412600.0) == 0.0, "a date gone by: no wait"
    for junk in ("²", "٣", "-1", "1.5", "soon", "", None):
        assert _seconds(junk) is None, junk


def test_a_webhook_without_a_secret_warns_once_that_records_go_unsigned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sigma_async"):
        WebhookSink("https://hooks.example.com/sigma?token=q-TOKEN", secret=SECRET)
        assert caplog.records == []
        WebhookSink("https://hooks.example.com/sigma?token=q-TOKEN")
    (warning,) = caplog.records
    assert "unsigned" in warning.getMessage() and "SIGMA_WEBHOOK_SECRET" in warning.getMessage()
    assert "q-TOKEN" not in warning.getMessage()


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
