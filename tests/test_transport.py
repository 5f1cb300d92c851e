"""Transport-level failures that a real server cannot easily produce, each mapped into the typed error tree."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest
from aioresponses import aioresponses

from sigma_async import APIConnectionError, APITimeoutError, ChannelCreate, RetryPolicy, SigmaClient

BASE = "https://api.sigma.test"
CHANNEL = re.compile(r"^https://api\.sigma\.test/api/livestream/channels.*$")


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


async def no_wait(_: float) -> None:
    return None


def client(**kw: object) -> SigmaClient:
    return SigmaClient(username="u", secret_key="k", app_id="a", base_url=BASE, sleep=no_wait, **kw)  # type: ignore[arg-type]


def connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("api.sigma.test", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


@pytest.mark.parametrize(
    ("exception", "cls", "sent"),
    [
        (aiohttp.ServerDisconnectedError(), APIConnectionError, True),
        (aiohttp.ClientPayloadError("truncated"), APIConnectionError, True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), APIConnectionError, True),
        (asyncio.TimeoutError(), APITimeoutError, True),
        (aiohttp.ServerTimeoutError("read"), APITimeoutError, True),
    ],
)
async def test_failures_after_sending_are_ambiguous(
    mocked: aioresponses, exception: Exception, cls: type[APIConnectionError], sent: bool
) -> None:
    for _ in range(4):
        mocked.get(CHANNEL, exception=exception)
    async with client() as c:
        with pytest.raises(cls) as info:
            await c.channels.get("c-1")
    assert type(info.value) is cls and info.value.sent is sent
    assert "GET /api/livestream/channels/c-1" in str(info.value)
    assert len(mocked.requests[("GET", aiohttp.client.URL(f"{BASE}/api/livestream/channels/c-1"))]) == 4  # retried


async def test_a_refused_connection_is_safe_to_retry_even_for_create(mocked: aioresponses) -> None:
    # Refused twice (the server never saw it: retried), then dropped after sending (maybe acted: not retried).
    mocked.post(CHANNEL, exception=connector_error())
    mocked.post(CHANNEL, exception=connector_error())
    mocked.post(CHANNEL, exception=aiohttp.ServerDisconnectedError())
    mocked.post(CHANNEL, exception=connector_error())
    async with client(retry=RetryPolicy(max_retries=5)) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.channels.create(ChannelCreate(name="x"))
    assert info.value.sent is True
    assert len(mocked.requests[("POST", aiohttp.client.URL(f"{BASE}/api/livestream/channels"))]) == 3


async def test_a_dropped_create_is_not_retried(mocked: aioresponses) -> None:
    mocked.post(CHANNEL, exception=aiohttp.ServerDisconnectedError())
    mocked.post(CHANNEL, exception=aiohttp.ServerDisconnectedError())
    async with client(retry=RetryPolicy(max_retries=5)) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.channels.create(ChannelCreate(name="x"))
    assert info.value.sent is True
    assert len(mocked.requests[("POST", aiohttp.client.URL(f"{BASE}/api/livestream/channels"))]) == 1


async def test_a_request_that_never_got_a_connection_was_not_sent(mocked: aioresponses) -> None:
    # No connection within the timeout: nothing reached the server, so even a create is safe to send again...
    no_connection = aiohttp.ConnectionTimeoutError("Connection timeout to host")
    mocked.post(CHANNEL, exception=no_connection)
    mocked.post(CHANNEL, exception=aiohttp.ServerDisconnectedError())  # ... unlike one that was sent, then lost
    mocked.post(CHANNEL, exception=no_connection)
    async with client(retry=RetryPolicy(max_retries=3)) as c:
        with pytest.raises(APIConnectionError) as lost:
            await c.channels.create(ChannelCreate(name="x"))
    assert lost.value.sent is True
    assert len(mocked.requests[("POST", aiohttp.client.URL(f"{BASE}/api/livestream/channels"))]) == 2
    async with client(retry=RetryPolicy(max_retries=0)) as c:
        with pytest.raises(APITimeoutError) as info:
            await c.channels.create(ChannelCreate(name="y"))
    assert info.value.sent is False and "no connection within" in str(info.value)
