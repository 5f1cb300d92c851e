"""The client over a real loopback server: what goes on the wire, what comes back, errors and retries."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
import samples
from _recorder import Recorder, Reply, recording_server

from sigma_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ChannelCreate,
    NotFoundError,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    S3Destination,
    ServerError,
    SigmaClient,
    __version__,
)
from sigma_async.testing import Emulator, Fault

USER, SECRET, APP = "alice", "TOP-SECRET-KEY-42", "app-7"
TOKEN = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
S3_SECRET = "S3-SECRET-VALUE-123"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition with a deadline (polling; never a fixed sleep)."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - a condition on another task's side effect
            await asyncio.sleep(0.005)


class SleepLog:
    """Stands in for asyncio.sleep: records each wait and yields once, so retry tests never wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def no_wait(_: float) -> None:
    return None


@pytest.fixture
async def server() -> AsyncIterator[Recorder]:
    async with recording_server() as recorder:
        yield recorder


@pytest.fixture
def sleeps() -> SleepLog:
    return SleepLog()


@pytest.fixture
async def client(server: Recorder, sleeps: SleepLog) -> AsyncIterator[SigmaClient]:
    async with SigmaClient(
        username=USER, secret_key=SECRET, app_id=APP, base_url=server.url, timeout=2.0, sleep=sleeps
    ) as c:
        yield c


def assert_standard_headers(headers: dict[str, str]) -> None:
    assert headers["Authorization"] == "Basic " + TOKEN
    assert headers["X-App-Id"] == APP
    assert headers["User-Agent"] == f"sigma-async/{__version__}"


async def test_create_sends_the_documented_request(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(201, samples.CHANNEL))
    dest = S3Destination(access_key="ak", bucket="b", endpoint="https://s3", secret_key=S3_SECRET, region="hn")
    channel = await client.channels.create(ChannelCreate(name="news", tags=["a"], destination_catchup=dest))
    assert channel.id == "42efeee4-e94e-4444-b0a6-90850413519d"
    [sent] = server.requests
    assert (sent.method, sent.path, sent.query) == ("POST", "/api/livestream/channels", {})
    assert_standard_headers(sent.headers)
    assert sent.headers["Content-Type"] == "application/json"
    body = sent.json()
    assert body["name"] == "news" and body["tags"] == ["a"] and body["catchup"] is True
    assert body["destinationCatchup"] == {
        "type": "s3",
        "s3": {"accessKey": "ak", "bucket": "b", "endpoint": "https://s3", "secretKey": S3_SECRET,
               "region": "hn", "segmentPrefix": None},
    }


@pytest.mark.parametrize(
    ("call", "method", "path"),
    [
        ("get", "GET", "/api/livestream/channels/ch-1"),
        ("start", "PATCH", "/api/livestream/channels/ch-1/start"),
        ("stop", "DELETE", "/api/livestream/channels/ch-1/stop"),
        ("delete", "DELETE", "/api/livestream/channels/ch-1"),
    ],
)
async def test_channel_operations(server: Recorder, client: SigmaClient, call: str, method: str, path: str) -> None:
    server.reply(Reply(200, samples.CHANNEL))
    result = await getattr(client.channels, call)("ch-1")
    [sent] = server.requests
    assert (sent.method, sent.path, sent.query, sent.body) == (method, path, {}, b"")
    assert_standard_headers(sent.headers)
    if call == "get":
        assert result.input.stream_token == "42efe-a050270cbbab47cbfacd-3519d"
        assert result.current_session_id == "977cc345-d771-4223-9306-07c2b9d49a34"
    else:
        assert result is None


async def test_sessions_list_status_and_events(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(200, samples.SESSIONS), Reply(200, samples.STATUS), Reply(200, samples.EVENTS))
    page = await client.sessions.list("ch-1", page=2, per_page=25)
    status = await client.sessions.status("s-1")
    events = await client.events.list("s-1")
    assert [s.duration for s in page.data] == [40, 10] and status.status == "live"
    assert [e.action for e in events.data] == ["ended", "stable"]
    listing, state, evs = server.requests
    assert (listing.method, listing.path) == ("GET", "/api/livestream/sessions")
    assert listing.q == {"channelId": "ch-1"}
    assert (listing.query["sort"], listing.query["page"], listing.query["perPage"]) == ("updatedAt|desc", "2", "25")
    assert (state.method, state.path, state.query) == ("GET", "/api/livestream/sessions/s-1/status", {})
    assert evs.path == "/api/livestream/events" and evs.q == {"$and": [{"sessionId": "s-1"}]}
    assert (evs.query["page"], evs.query["perPage"]) == ("1", "100")
    for sent in server.requests:
        assert_standard_headers(sent.headers)


def session_page(start: int, count: int, total: int = 250) -> Reply:
    data = [{"id": f"s-{i}", "status": "ended"} for i in range(start, start + count)]
    return Reply(200, {"data": data, "total": total, "count": count, "perPage": 100})


async def test_iter_walks_every_page_once(server: Recorder, client: SigmaClient) -> None:
    server.reply(session_page(0, 100), session_page(100, 100), session_page(200, 50))
    ids = [s.id async for s in client.sessions.iter("ch-1")]
    assert len(ids) == 250 and len(set(ids)) == 250
    assert [r.query["page"] for r in server.requests] == ["1", "2", "3"]


async def test_iter_stops_on_a_server_that_repeats_a_page(server: Recorder, client: SigmaClient) -> None:
    server.default = session_page(0, 100, total=10_000)
    ids = [s.id async for s in client.sessions.iter("ch-1")]
    assert len(ids) == 100
    assert len(server.requests) == 4  # three pages in a row with nothing new end the walk


async def test_iter_stops_on_a_repeated_page_of_items_without_ids(server: Recorder, client: SigmaClient) -> None:
    server.default = Reply(200, {"data": [{"status": "ended", "name": f"n{i}"} for i in range(100)]})
    names = [s.name async for s in client.sessions.iter("ch-1")]
    assert len(names) == 100 and len(server.requests) == 4


async def test_iter_reads_on_past_a_page_shifted_by_a_whole_page(server: Recorder, client: SigmaClient) -> None:
    # 100 new sessions arrived after page 1 was read: page 2 is page 1 again, and the rest lies further down.
    server.reply(session_page(100, 100), session_page(100, 100), session_page(200, 100), session_page(300, 20))
    ids = [s.id async for s in client.sessions.iter("ch-1")]
    assert ids == [f"s-{i}" for i in range(100, 320)]


async def test_iter_pages_shifted_by_new_items_are_deduplicated(server: Recorder, client: SigmaClient) -> None:
    # A new event arrived between page reads: page 2 starts with the last item of page 1.
    server.reply(session_page(0, 100), session_page(99, 100), session_page(199, 10))
    ids = [s.id async for s in client.sessions.iter("ch-1")]
    assert ids == [f"s-{i}" for i in range(209)]


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, AuthenticationError), (404, NotFoundError)],
)
async def test_status_errors_carry_message_and_request_id(
    server: Recorder, client: SigmaClient, status: int, cls: type[Exception]
) -> None:
    server.reply(Reply(status, {"message": "nope"}, headers={"X-Request-Id": "rid-1"}))
    with pytest.raises(cls) as info:
        await client.channels.get("ch-1")
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert info.value.message == "nope" and info.value.request_id == "rid-1"  # type: ignore[attr-defined]
    assert len(server.requests) == 1  # not retried


async def test_malformed_json_raises_decode_error_without_retry(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(200, b'{"id": "ch-1", "name": '))
    with pytest.raises(ResponseDecodeError, match="HTTP 200"):
        await client.channels.get("ch-1")
    assert len(server.requests) == 1


async def test_refused_connection_raises_connection_error(sleeps: SleepLog) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SigmaClient(
        username=USER, secret_key=SECRET, app_id=APP, base_url=f"http://127.0.0.1:{port}", sleep=sleeps
    ) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.channels.get("ch-1")
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.sent is False and len(sleeps.waits) == 3  # retried three times, then raised


async def test_hung_server_times_out_within_timeout_times_attempts(server: Recorder, sleeps: SleepLog) -> None:
    server.default = Reply(hang=True)
    async with SigmaClient(
        username=USER, secret_key=SECRET, app_id=APP, base_url=server.url, timeout=0.2,
        retry=RetryPolicy(max_retries=2), sleep=sleeps,
    ) as c:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await c.sessions.status("s-1")
        elapsed = time.monotonic() - started
    assert len(server.requests) == 3
    assert 0.6 <= elapsed < 0.6 + 1.0  # three attempts of 0.2 s; the backoff sleeps are recorded, not waited


async def test_get_503_503_200_succeeds_on_the_third_request(
    server: Recorder, client: SigmaClient, sleeps: SleepLog, caplog: pytest.LogCaptureFixture
) -> None:
    server.reply(Reply(503, {"message": "busy"}), Reply(503, {"message": "busy"}), Reply(200, samples.STATUS))
    with caplog.at_level(logging.INFO, logger="sigma_async"):
        assert (await client.sessions.status("s-1")).status == "live"
    assert len(server.requests) == 3
    assert len(sleeps.waits) == 2 and 0.25 <= sleeps.waits[0] <= 0.5 and 0.5 <= sleeps.waits[1] <= 1.0
    retries = [r for r in caplog.records if r.levelno == logging.INFO and "retrying" in r.getMessage()]
    assert len(retries) == 2 and "GET /api/livestream/sessions/s-1/status" in retries[0].getMessage()
    assert "HTTP 503" in retries[0].getMessage()


async def test_429_retry_after_is_waited_for_real(server: Recorder) -> None:
    server.reply(Reply(429, {"message": "slow down"}, headers={"Retry-After": "1"}), Reply(200, samples.STATUS))
    async with SigmaClient(username=USER, secret_key=SECRET, app_id=APP, base_url=server.url) as c:
        started = time.monotonic()
        assert (await c.sessions.status("s-1")).status == "live"
        assert time.monotonic() - started >= 0.99
    assert len(server.requests) == 2


async def test_retry_after_pauses_every_call_of_the_client(server: Recorder, sleeps: SleepLog) -> None:
    server.reply(Reply(429, {}, headers={"Retry-After": "2"}), Reply(200, samples.STATUS), Reply(200, samples.STATUS))
    # The pause alone: the adaptive rate's own wait after a 429 is tested with the budget.
    async with SigmaClient(
        username=USER, secret_key=SECRET, app_id=APP, base_url=server.url, sleep=sleeps, adaptive=False
    ) as client:
        await client.sessions.status("s-1")
        assert sleeps.waits == [2.0]
        assert client.paused_for > 1.5  # the fake sleep did not wait: the pause is still on
        await client.sessions.status("s-2")  # another call waits out the rest of the pause first
    assert len(sleeps.waits) == 2 and 1.5 < sleeps.waits[1] <= 2.0


async def test_create_is_not_retried_after_a_500(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(500, {"message": "boom"}), Reply(201, samples.CREATED))
    with pytest.raises(ServerError, match="boom"):
        await client.channels.create(ChannelCreate(name="x"))
    assert len(server.requests) == 1


async def test_create_is_not_retried_after_a_dropped_connection(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(drop=True), Reply(201, samples.CREATED))
    with pytest.raises(APIConnectionError):
        await client.channels.create(ChannelCreate(name="x"))
    assert len(server.requests) == 1


async def test_create_is_retried_on_429_and_on_503_with_retry_after(
    server: Recorder, client: SigmaClient
) -> None:
    server.reply(
        Reply(429, {}, headers={"Retry-After": "0"}),
        Reply(503, {}, headers={"Retry-After": "0"}),
        Reply(201, samples.CREATED),
    )
    channel = await client.channels.create(ChannelCreate(name="x"))
    assert channel.name == "Channel_02" and len(server.requests) == 3


async def test_long_retry_after_raises_at_once(server: Recorder, client: SigmaClient, sleeps: SleepLog) -> None:
    server.reply(Reply(429, {"message": "quota"}, headers={"Retry-After": "3600"}))
    with pytest.raises(RateLimitError) as info:
        await client.channels.get("ch-1")
    assert info.value.retry_after == 3600
    assert len(server.requests) == 1 and sleeps.waits == [] and client.paused_for == 0


async def test_delete_retry_that_finds_nothing_counts_as_deleted(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(502, {}), Reply(404, {"message": "not found"}))
    await client.channels.delete("ch-1")
    assert len(server.requests) == 2


async def test_delete_404_first_time_is_an_error(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(404, {"message": "not found"}))
    with pytest.raises(NotFoundError):
        await client.channels.delete("ch-1")


async def test_redirects_are_not_followed(server: Recorder, client: SigmaClient) -> None:
    server.reply(Reply(302, b"", headers={"Location": "https://elsewhere.example/steal?x=1"}))
    with pytest.raises(Exception, match=r"redirect to https://elsewhere\.example") as info:
        await client.channels.get("ch-1")
    assert "steal" not in str(info.value) and len(server.requests) == 1


async def test_cancellation_is_never_swallowed_or_retried(server: Recorder, client: SigmaClient) -> None:
    server.default = Reply(hang=True)
    task = asyncio.create_task(client.sessions.status("s-1"))
    await until(lambda: bool(server.requests))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(server.requests) == 1


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "a?x"])
async def test_bad_ids_raise_before_any_request(server: Recorder, client: SigmaClient, bad: str) -> None:
    for call in (client.channels.get, client.channels.start, client.channels.delete, client.sessions.status):
        with pytest.raises(ValueError):
            await call(bad)
    with pytest.raises(ValueError):
        client.events.iter(bad)
    with pytest.raises(ValueError):
        await client.channels.create(ChannelCreate(name=""))
    assert server.requests == []


async def test_secrets_reach_no_repr_error_or_log(
    server: Recorder, client: SigmaClient, caplog: pytest.LogCaptureFixture
) -> None:
    echoed = json.dumps({"message": f"bad key {SECRET}", "auth": "Basic " + TOKEN, "secretKey": S3_SECRET})
    server.reply(Reply(500, echoed), Reply(500, echoed), Reply(500, echoed), Reply(500, echoed))
    server.reply(Reply(200, samples.CHANNEL.replace(b'"id": "42efeee4-e94e-4444-b0a6-90850413519d",', b"")))
    dest = S3Destination(access_key="ak", bucket="b", endpoint="e", secret_key=S3_SECRET, region="r")
    spec = ChannelCreate(name="x", destination_catchup=dest)
    texts = [repr(client), repr(client.credentials), repr(spec), str(spec), repr(dest)]
    with caplog.at_level(logging.DEBUG, logger="sigma_async"):
        with pytest.raises(ServerError) as err1:
            await client.channels.get("ch-1")
        with pytest.raises(ResponseDecodeError) as err2:
            await client.channels.get("ch-1")
    channel = samples.CHANNEL
    from sigma_async import _protocol as proto

    decoded = proto.decode(proto.Response(200, channel), proto.CHANNEL_DECODER)
    texts += [str(err1.value), repr(err1.value), repr(err1.value.body), str(err2.value), repr(decoded)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("retrying" in t for t in texts)  # the log was really captured
    # Even where the server echoes the credentials back in its message, no SDK text repeats them.
    for text in texts:
        assert TOKEN not in text and S3_SECRET not in text and "42efe-a050270cbbab47cbfacd-3519d" not in text
        assert SECRET not in text


# -- attempts are ours alone: aiohttp re-sends nothing behind the retry policy's back -----------------------------


async def test_a_get_that_keeps_dropping_reaches_the_server_once_per_attempt(
    server: Recorder, client: SigmaClient
) -> None:
    server.default = Reply(drop=True)
    with pytest.raises(APIConnectionError):
        await client.channels.get("ch-1")
    assert len(server.requests) == 4  # 1 + max_retries=3; aiohttp's own re-send of a GET would make it 8
    assert client.stats.sent == 4 and client.stats.retried == 3


async def test_a_delete_whose_answer_was_lost_and_whose_retry_finds_nothing_is_deleted(emu: Emulator) -> None:
    channel = emu.create_channel("doomed")
    emu.faults.add("DELETE /channels/{id}", Fault(drop=True, after=True))  # deleted, then the answer is lost
    async with emu.client(sleep=no_wait) as client:
        await client.channels.delete(channel.id)  # no NotFoundError: the retry's 404 means the first one worked
    assert [e.status for e in emu.journal.entries("DELETE /channels/{id}")] == [None, 404]
    assert channel.id not in emu.channels


async def test_a_stop_whose_answer_was_lost_and_whose_retry_conflicts_is_stopped(emu: Emulator) -> None:
    channel = emu.create_channel("on-air")
    emu.start_channel(channel.id)
    emu.faults.add("DELETE /channels/{id}/stop", Fault(drop=True, after=True))
    async with emu.client(sleep=no_wait) as client:
        await client.channels.stop(channel.id)  # no ConflictError: the first attempt did stop it
    assert [e.status for e in emu.journal.entries("DELETE /channels/{id}/stop")] == [None, 409]


async def test_waiting_for_a_pooled_connection_is_not_part_of_the_timeout(server: Recorder) -> None:
    # Each answer takes ~0.5 s, under the 0.9 s timeout; with one connection the create waits ~0.5 s for it first.
    slow = Reply(201, samples.CREATED, chunks=2, chunk_delay=0.25)
    server.reply(Reply(200, samples.CHANNEL, chunks=2, chunk_delay=0.25), slow)
    async with SigmaClient(
        username=USER, secret_key=SECRET, app_id=APP, base_url=server.url, timeout=0.9, max_connections=1,
        retry=RetryPolicy(max_retries=0),
    ) as c:
        got, created = await asyncio.gather(c.channels.get("ch-1"), c.channels.create(ChannelCreate(name="x")))
    assert got.id and created.name == "Channel_02"
    assert len(server.requests) == 2


# -- logging: a retry is announced only when it will happen, giving up is said once --------------------------------


async def test_retries_are_logged_as_they_happen_and_giving_up_once(
    server: Recorder, client: SigmaClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.default = Reply(503, {"message": "busy"})
    with caplog.at_level(logging.INFO, logger="sigma_async"), pytest.raises(ServerError):
        await client.sessions.status("s-1")
    messages = [r.getMessage() for r in caplog.records if r.name == "sigma_async"]
    retries = [m for m in messages if m.startswith("retrying")]
    assert [m.split("(retry ")[1].split(" in ")[0] for m in retries] == ["1 of 3", "2 of 3", "3 of 3"]
    gave_up = [m for m in messages if "giving up" in m]
    assert gave_up == ["giving up on GET /api/livestream/sessions/s-1/status after 4 attempts: HTTP 503"]
    assert len(server.requests) == 4


async def test_retry_after_infinity_raises_at_once(server: Recorder, client: SigmaClient, sleeps: SleepLog) -> None:
    server.default = Reply(429, {"message": "quota"}, headers={"Retry-After": "inf"})
    with pytest.raises(RateLimitError) as info:
        await client.sessions.status("s-1")
    assert info.value.retry_after == float("inf")
    assert len(server.requests) == 1 and sleeps.waits == [] and client.paused_for == 0
