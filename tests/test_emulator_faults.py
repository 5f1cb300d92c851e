"""The emulator's fault injection and request journal, seen from a raw HTTP client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from sigma_async import ChannelCreate
from sigma_async.testing import ROUTES, Emulator, Fault

CREATE_BODY = msgspec.json.encode(ChannelCreate(name="news").to_body())


class Api:
    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.emu = emu
        self.auth = {"Authorization": emu.credentials.authorization, "X-App-Id": emu.app_id}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, bytes, Any]:
        headers = {**self.auth, **kw.pop("headers", {})}
        async with self.http.request(method, self.emu.api_url + path, headers=headers, **kw) as r:
            return r.status, await r.read(), r.headers

    async def create(self) -> tuple[int, bytes, Any]:
        return await self.call("POST", "/channels", data=CREATE_BODY, headers={"Content-Type": "application/json"})


@pytest.fixture
async def api(emu: Emulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, emu)


async def test_scripted_faults_fire_in_order_then_stop(api: Api, emu: Emulator) -> None:
    emu.faults.add("POST /channels", Fault(status=503, retry_after=2), times=2)
    emu.faults.add("POST /channels", Fault(status=429, retry_after=0.25, message="slow down"))

    answers = [await api.create() for _ in range(4)]
    assert [a[0] for a in answers] == [503, 503, 429, 201]
    assert [a[2].get("Retry-After") for a in answers] == ["2", "2", "0.25", None]
    assert json.loads(answers[0][1]) == {
        "statusCode": 503,
        "message": "Service Unavailable (injected)",
        "error": "Service Unavailable",
    }
    assert json.loads(answers[2][1])["message"] == "slow down"
    assert all(a[2]["X-Request-Id"] for a in answers)
    # A fault answers before the operation: only the last call created a channel.
    assert len(emu.channels) == 1
    assert emu.faults.pending == 0


async def test_a_fault_only_hits_its_route_and_star_hits_all(api: Api, emu: Emulator) -> None:
    emu.faults.add("GET /events", Fault(status=500), times="always")
    assert (await api.call("GET", "/sessions"))[0] == 200
    assert [(await api.call("GET", "/events"))[0] for _ in range(3)] == [500, 500, 500]
    emu.faults.clear("GET /events")
    assert (await api.call("GET", "/events"))[0] == 200

    emu.faults.add("*", Fault(status=502), times=2)
    assert (await api.call("GET", "/sessions"))[0] == 502
    assert (await api.create())[0] == 502
    assert (await api.call("GET", "/sessions"))[0] == 200


async def test_retry_after_may_be_an_http_date(api: Api, emu: Emulator) -> None:
    when = "Wed, 21 Oct 2015 07:28:00 GMT"
    emu.faults.add("GET /sessions", Fault(status=429, retry_after=when))
    status, _, headers = await api.call("GET", "/sessions")
    assert (status, headers["Retry-After"]) == (429, when)


async def _statuses_with_random_faults(seed: int, n: int = 40) -> list[int]:
    async with Emulator(manual_clock=True) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu)
        emu.faults.add("GET /sessions", Fault(status=503), probability=0.3, seed=seed)
        return [(await api.call("GET", "/sessions"))[0] for _ in range(n)]


async def test_random_faults_are_reproducible_with_a_seed() -> None:
    first = await _statuses_with_random_faults(seed=11)
    assert first == await _statuses_with_random_faults(seed=11)
    assert first != await _statuses_with_random_faults(seed=12)
    assert 0 < first.count(503) < len(first)
    assert set(first) == {200, 503}


async def test_probability_bounds_and_times_cap(api: Api, emu: Emulator) -> None:
    never = emu.faults.add("GET /sessions", Fault(status=500), probability=0.0)
    always = emu.faults.add("GET /sessions", Fault(status=503), probability=1.0, times=2)
    assert [(await api.call("GET", "/sessions"))[0] for _ in range(3)] == [503, 503, 200]
    assert (never.fired, always.fired) == (0, 2)


async def test_drop_closes_the_connection_without_an_answer(api: Api, emu: Emulator) -> None:
    emu.faults.add("POST /channels", Fault(drop=True))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.create()
    assert not emu.channels
    assert emu.journal.last("POST /channels").status is None
    assert (await api.create())[0] == 201


async def test_aiohttp_resends_an_idempotent_request_once_after_a_drop(api: Api, emu: Emulator) -> None:
    # aiohttp itself retries GET/PUT/DELETE once on a dropped connection: one drop is invisible to it.
    emu.faults.add("GET /sessions", Fault(drop=True))
    assert (await api.call("GET", "/sessions"))[0] == 200
    assert emu.journal.count("GET /sessions") == 2

    emu.faults.add("GET /sessions", Fault(drop=True), times=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("GET", "/sessions")


async def test_malformed_answers_200_with_broken_json(api: Api, emu: Emulator) -> None:
    emu.faults.add("GET /sessions", Fault(malformed=True))
    status, body, headers = await api.call("GET", "/sessions")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_custom_body_and_content_type(api: Api, emu: Emulator) -> None:
    emu.faults.add("GET /sessions", Fault(status=502, body="<html>Bad Gateway</html>", content_type="text/html"))
    status, body, headers = await api.call("GET", "/sessions")
    assert (status, body, headers["Content-Type"]) == (502, b"<html>Bad Gateway</html>", "text/html")


async def test_latency_delays_the_answer(api: Api, emu: Emulator) -> None:
    emu.faults.add("GET /sessions", Fault(latency=0.2))
    began = time.monotonic()
    status, _, _ = await api.call("GET", "/sessions")
    assert status == 200 and time.monotonic() - began >= 0.2


async def test_a_client_giving_up_on_a_slow_answer_frees_the_server(api: Api, emu: Emulator) -> None:
    emu.faults.add("POST /channels", Fault(latency=30.0))
    with pytest.raises(asyncio.TimeoutError):
        await api.call("POST", "/channels", data=CREATE_BODY, timeout=aiohttp.ClientTimeout(total=0.1))
    await emu.wait_for(lambda: emu.journal.in_flight == 0, timeout=2.0)
    assert not emu.channels  # latency came before the operation, which never ran


async def test_after_runs_the_operation_then_fails(api: Api, emu: Emulator) -> None:
    emu.faults.add("POST /channels", Fault(status=500, after=True))
    assert (await api.create())[0] == 500
    assert len(emu.channels) == 1  # the server acted, the client was told it failed

    cid = next(iter(emu.channels))
    emu.faults.add("PATCH /channels/{id}/start", Fault(drop=True, after=True))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call("PATCH", f"/channels/{cid}/start")
    assert emu.channels[cid].current_session_id is not None
    assert (await api.call("PATCH", f"/channels/{cid}/start"))[0] == 409

    emu.faults.add("DELETE /channels/{id}/stop", Fault(latency=0.05, after=True))
    began = time.monotonic()
    assert (await api.call("DELETE", f"/channels/{cid}/stop"))[0] == 200
    assert time.monotonic() - began >= 0.05


async def test_clear_disarms_everything(api: Api, emu: Emulator) -> None:
    emu.faults.add("*", Fault(status=500), times="always")
    emu.faults.add("GET /sessions", Fault(status=503), probability=1.0)
    emu.faults.clear()
    assert len(emu.faults) == 0
    assert (await api.call("GET", "/sessions"))[0] == 200


def test_faults_are_validated() -> None:
    emu = Emulator()
    with pytest.raises(ValueError, match="unknown route"):
        emu.faults.add("GET /channel/{id}", Fault(status=500))
    with pytest.raises(ValueError, match="probability"):
        emu.faults.add("GET /sessions", Fault(status=500), probability=1.5)
    with pytest.raises(ValueError, match="one of"):
        Fault(status=500, drop=True)
    with pytest.raises(ValueError, match="status"):
        Fault(status=1000)
    with pytest.raises(ValueError, match="latency"):
        Fault(latency=-1)
    assert set(ROUTES) >= {"POST /channels", "GET /events", "DELETE /channels/{id}"}


async def test_journal_records_every_request(api: Api, emu: Emulator) -> None:
    await api.create()
    await api.call("GET", "/sessions", params={"q": json.dumps({"channelId": "x"}), "page": "2"})
    await api.call("GET", "/channels/nope", headers={"X-App-Id": "wrong"})
    await api.call("GET", "/no-such-route")

    assert emu.journal.count() == 4 == len(emu.journal)
    assert emu.journal.count("POST /channels") == 1 and emu.journal.count("GET /channels/{id}") == 1
    create, listing, forbidden, unknown = emu.journal.entries()
    assert (create.method, create.path, create.status) == ("POST", "/api/livestream/channels", 201)
    assert create.json()["name"] == "news" and create.headers["X-App-Id"] == emu.app_id
    assert create.headers["Authorization"] == emu.credentials.authorization
    assert listing.query == {"q": '{"channelId": "x"}', "page": "2"}
    assert (forbidden.route, forbidden.status) == ("GET /channels/{id}", 403)
    assert (unknown.route, unknown.status) == (None, 404)
    assert all(e.finished is not None and e.finished >= e.started for e in (create, listing, forbidden, unknown))

    emu.journal.clear()
    assert emu.journal.count() == 0 and emu.journal.entries() == []


async def test_journal_tracks_requests_in_flight(api: Api, emu: Emulator) -> None:
    emu.faults.add("GET /sessions", Fault(latency=0.2), times=5)
    calls = asyncio.gather(*(api.call("GET", "/sessions") for _ in range(5)))
    await emu.wait_for(lambda: emu.journal.in_flight == 5, timeout=2.0)
    assert [status for status, _, _ in await calls] == [200] * 5
    assert emu.journal.in_flight == 0 and emu.journal.max_in_flight == 5


async def test_wait_for_times_out(emu: Emulator) -> None:
    with pytest.raises(TimeoutError, match="not met"):
        await emu.wait_for(lambda: False, timeout=0.02)
    assert await emu.wait_for(lambda: "ok") == "ok"
