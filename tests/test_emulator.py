"""The emulator over raw HTTP: every route's status and body, credentials, validation, listings, lifecycle, clock."""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import msgspec
import pytest

from sigma_async import Channel, ChannelCreate, Event, Page, S3Destination, Session
from sigma_async.testing import Clock, Emulator, EmulatorError

START = datetime(2024, 7, 22, 11, 33, 50, tzinfo=timezone.utc)


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class Api:
    """Raw calls to the emulator, authenticated unless told otherwise."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.emu = emu
        self.auth = {"Authorization": emu.credentials.authorization, "X-App-Id": emu.app_id}

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        async with self.http.request(
            method, self.emu.api_url + path, headers=self.auth if headers is None else headers, **kw
        ) as r:
            raw = await r.read()
            return Reply(r.status, json.loads(raw) if raw else None, r.headers)

    async def create(self, name: str = "news", **kw: Any) -> dict[str, Any]:
        body = msgspec.json.encode(ChannelCreate(name=name, **kw).to_body())
        reply = await self.call(
            "POST", "/channels", data=body, headers={**self.auth, "Content-Type": "application/json"}
        )
        assert reply.status == 201, reply.body
        return dict(reply.body)

    async def sessions(self, channel_id: str, **params: Any) -> Reply:
        query = {"q": json.dumps({"channelId": channel_id}), "sort": "updatedAt|desc", **params}
        return await self.call("GET", "/sessions", params=query)

    async def events(self, session_id: str, **params: Any) -> Reply:
        query = {"q": json.dumps({"$and": [{"sessionId": session_id}]}), "sort": "updatedAt|desc", **params}
        return await self.call("GET", "/events", params=query)


@pytest.fixture
async def api(emu: Emulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, emu)


# -- channels --------------------------------------------------------------------------------------------------


async def test_create_answers_201_with_the_channel(api: Api, emu: Emulator) -> None:
    dest = S3Destination(access_key="ak", bucket="b", endpoint="https://s3.test", secret_key="sk", region="r")
    body = await api.create("Channel_02", destination_catchup=dest)

    channel = msgspec.convert(body, Channel)
    assert uuid.UUID(channel.id).version == 4
    assert channel.name == "Channel_02"
    assert channel.app_id == emu.app_id and channel.status == "active" and channel.input_id
    assert channel.input.rtmp_server == "rtmp://127.0.0.1:1935/livestream" and channel.input.stream_token
    assert channel.live_stream_url == f"{emu.url}/manifest/{channel.id}/master.m3u8"
    assert body["destinationCatchup"] == {"type": "s3", "s3": msgspec.to_builtins(dest)}
    assert body["currentSessionId"] is None and channel.created_at == channel.updated_at
    assert emu.channels[channel.id].name == "Channel_02"


async def test_every_answer_carries_a_request_id(api: Api) -> None:
    ok = await api.call("GET", "/sessions")
    missing = await api.call("GET", "/channels/nope")
    assert uuid.UUID(ok.headers["X-Request-Id"]) != uuid.UUID(missing.headers["X-Request-Id"])


async def test_get_channel_and_unknown_id(api: Api) -> None:
    created = await api.create()
    got = await api.call("GET", f"/channels/{created['id']}")
    assert got.status == 200 and got.body == created

    missing = await api.call("GET", "/channels/00000000-0000-4000-8000-000000000000")
    assert missing.status == 404
    assert missing.body["statusCode"] == 404 and missing.body["error"] == "Not Found" and missing.body["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic " + base64.b64encode(b"emulator:wrong").decode(), "X-App-Id": "emulator-app"}, 401),
        ({"Authorization": "Bearer token", "X-App-Id": "emulator-app"}, 401),
        ({"Authorization": "Basic " + base64.b64encode(b"emulator:emulator-secret").decode()}, 403),
        ({"Authorization": "Basic " + base64.b64encode(b"emulator:emulator-secret").decode(), "X-App-Id": "x"}, 403),
    ],
    ids=["no-auth", "wrong-secret", "not-basic", "no-app-id", "wrong-app-id"],
)
async def test_credentials_are_checked(api: Api, emu: Emulator, headers: dict[str, str], status: int) -> None:
    reply = await api.call("POST", "/channels", headers=headers, json={"name": "x"})
    assert reply.status == status
    assert reply.body["statusCode"] == status and reply.body["message"]
    assert not emu.channels


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (b"{not json", 400, "JSON"),
        (b"", 400, "JSON"),
        (b'{"name": "x"}', 422, "description"),
        (msgspec.json.encode({**msgspec.to_builtins(ChannelCreate(name="x").to_body()), "name": "  "}), 422, "name"),
        (
            msgspec.json.encode({**msgspec.to_builtins(ChannelCreate(name="x").to_body()), "stopTimeout": "30"}),
            422,
            "stopTimeout",
        ),
    ],
    ids=["not-json", "empty", "missing-fields", "blank-name", "wrong-type"],
)
async def test_bad_create_bodies(api: Api, emu: Emulator, data: bytes, status: int, says: str) -> None:
    reply = await api.call("POST", "/channels", data=data, headers={**api.auth, "Content-Type": "application/json"})
    assert reply.status == status
    assert says in reply.body["message"]
    assert not emu.channels


async def test_start_stop_and_delete_answer_as_documented(api: Api, emu: Emulator) -> None:
    cid = (await api.create())["id"]

    started = await api.call("PATCH", f"/channels/{cid}/start")
    assert started.status == 200
    sid = started.body["currentSessionId"]
    assert emu.sessions[sid].status == "initializing"
    assert (await api.call("PATCH", f"/channels/{cid}/start")).status == 409

    stopped = await api.call("DELETE", f"/channels/{cid}/stop")
    assert stopped.status == 200 and stopped.body["id"] == cid and stopped.body["currentSessionId"] is None
    again = await api.call("DELETE", f"/channels/{cid}/stop")
    assert again.status == 409 and again.body["message"]

    deleted = await api.call("DELETE", f"/channels/{cid}")
    assert deleted.status == 200 and deleted.body == {}
    assert (await api.call("GET", f"/channels/{cid}")).status == 404
    assert (await api.call("DELETE", f"/channels/{cid}")).status == 404
    for verb, path in (("PATCH", "/start"), ("DELETE", "/stop")):
        assert (await api.call(verb, f"/channels/{cid}{path}")).status == 404


async def test_delete_ends_a_running_session(api: Api, emu: Emulator) -> None:
    cid = (await api.create())["id"]
    sid = (await api.call("PATCH", f"/channels/{cid}/start")).body["currentSessionId"]
    emu.connect_publisher(cid)
    assert (await api.call("DELETE", f"/channels/{cid}")).status == 200
    assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "ended"}
    # The channel is gone, its sessions are not.
    assert (await api.sessions(cid)).body["total"] == 1


async def test_unknown_routes_answer_json_errors(api: Api) -> None:
    missing = await api.call("GET", "/nothing-here")
    assert missing.status == 404 and missing.body["error"] == "Not Found"
    wrong_verb = await api.call("POST", "/channels/abc")
    assert wrong_verb.status == 405 and "GET" in wrong_verb.headers["Allow"]
    assert (await api.call("GET", "/sessions/nope/status")).status == 404


# -- the lifecycle ---------------------------------------------------------------------------------------------


async def test_full_lifecycle_with_the_manual_clock(api: Api, emu: Emulator) -> None:
    channel = await api.create("Channel_02")
    cid = channel["id"]
    sid = (await api.call("PATCH", f"/channels/{cid}/start")).body["currentSessionId"]
    t0 = emu.clock.now()
    assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "initializing"}
    assert emu.sessions[sid].name == f"Channel_02_{t0:%Y-%m-%d-%H:%M:%S}"

    emu.clock.advance(5)
    emu.connect_publisher(cid)
    assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "live"}
    emu.clock.advance(40)
    assert (await api.call("DELETE", f"/channels/{cid}/stop")).status == 200
    assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "ended"}

    events = msgspec.convert((await api.events(sid)).body, Page[Event])
    assert [(e.action, e.actor) for e in events.data] == [
        ("ended", "user"),
        ("stop", "user"),
        ("stable", None),
        ("start", "system"),
        ("initialize", "user"),
    ]
    assert events.data[0].message == "Kênh đã kết thúc"
    assert all(e.session_id == sid for e in events.data)
    stamps = [e.created_at for e in events.data]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)

    listing = await api.sessions(cid)
    page = msgspec.convert(listing.body, Page[Session])
    assert (page.total, page.count, page.page, page.per_page) == (1, 1, 1, 100)
    session = page.data[0]
    assert session.id == sid and session.channel_id == cid and session.status == "ended"
    assert session.started_at is not None and session.finished_at is not None
    assert session.started_at - t0 >= timedelta(seconds=5) and session.duration == 40
    assert session.client_info is not None and session.client_info.stream == channel["input"]["streamToken"]
    assert listing.body["data"][0]["clientInfo"]["tcUrl"] == "rtmp://127.0.0.1:1935/livestream"
    assert session.channel is not None and session.channel.id == cid

    assert (await api.call("DELETE", f"/channels/{cid}")).status == 200
    assert (await api.call("GET", f"/channels/{cid}")).status == 404


async def test_interrupted_and_restored_signal(api: Api, emu: Emulator) -> None:
    cid = (await api.create(stop_timeout=30))["id"]
    sid = (await api.call("PATCH", f"/channels/{cid}/start")).body["currentSessionId"]
    emu.connect_publisher(cid)
    emu.interrupt_signal(cid)
    assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "interrupted"}
    emu.clock.advance(29)
    emu.restore_signal(sid)
    emu.clock.advance(60)  # the timer was disarmed by the restore
    assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "live"}
    actions = [e["action"] for e in (await api.events(sid)).body["data"]]
    assert actions[:2] == ["signal_restored", "signal_interrupted"]


async def test_a_session_whose_encoder_never_comes_ends_after_stop_timeout(api: Api, emu: Emulator) -> None:
    cid = (await api.create(stop_timeout=30))["id"]
    sid = (await api.call("PATCH", f"/channels/{cid}/start")).body["currentSessionId"]
    emu.clock.advance(29.9)
    assert emu.sessions[sid].status == "initializing"
    emu.clock.advance(0.2)
    assert emu.sessions[sid].ended and emu.sessions[sid].events[-1].actor == "system"
    # An encoder that connects in time disarms it.
    cid2 = (await api.create(stop_timeout=30))["id"]
    sid2 = (await api.call("PATCH", f"/channels/{cid2}/start")).body["currentSessionId"]
    emu.connect_publisher(cid2)
    emu.clock.advance(3600)
    assert not emu.sessions[sid2].ended


async def test_lost_signal_ends_the_session_after_stop_timeout(api: Api, emu: Emulator) -> None:
    cid = (await api.create(stop_timeout=30))["id"]
    sid = (await api.call("PATCH", f"/channels/{cid}/start")).body["currentSessionId"]
    emu.connect_publisher(cid)
    lost_at = emu.disconnect_publisher(cid).events[-1].created_at

    emu.clock.advance(29.9)
    assert not emu.sessions[sid].ended
    emu.clock.advance(100)  # ends synchronously, at the deadline rather than when the clock was read
    session = emu.sessions[sid]
    assert session.ended and session.status == "ended"
    assert session.finished_at is not None and session.finished_at - lost_at == timedelta(seconds=30)
    ended = session.events[-1]
    assert (ended.action, ended.actor, ended.message) == ("ended", "system", "Kênh đã kết thúc")
    channel = (await api.call("GET", f"/channels/{cid}")).body
    assert channel["currentSessionId"] is None
    # A new session can start on the same channel.
    assert (await api.call("PATCH", f"/channels/{cid}/start")).status == 200


async def test_speed_factor_makes_stop_timeout_pass_in_well_under_a_second() -> None:
    async with Emulator(speed=60.0) as emu, aiohttp.ClientSession() as http:
        api = Api(http, emu)
        cid = (await api.create(stop_timeout=30))["id"]
        sid = (await api.call("PATCH", f"/channels/{cid}/start")).body["currentSessionId"]
        emu.connect_publisher(cid)
        began = time.monotonic()
        emu.disconnect_publisher(cid)
        # Nobody polls: the emulator's own timer ends the session.
        await emu.wait_for(lambda: emu.sessions[sid].ended, timeout=5.0)
        wall = time.monotonic() - began
        assert 0.3 < wall < 1.0
        assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "ended"}
        assert emu.sessions[sid].events[-1].actor == "system"


async def test_advancing_a_real_time_clock_brings_timers_forward() -> None:
    async with Emulator(speed=1.0) as emu:
        cid = emu.create_channel(stop_timeout=30).id
        session = emu.start_channel(cid)
        emu.connect_publisher(cid)
        emu.interrupt_signal(cid)
        emu.clock.advance(29.8)  # 0.2 s of real time left
        began = time.monotonic()
        await emu.wait_for(lambda: session.ended, timeout=2.0)
        assert time.monotonic() - began < 1.0


def test_clock_modes() -> None:
    manual = Clock(start=START, manual=True)
    assert manual.now() == START and manual.wall_seconds(30) is None
    assert manual.advance(1.5) == START + timedelta(seconds=1.5) == manual.now()
    with pytest.raises(ValueError, match="forward"):
        manual.advance(-1)
    with pytest.raises(ValueError, match="aware"):
        Clock(start=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        Clock(speed=0)
    fast = Clock(start=START, speed=1000.0)
    assert fast.wall_seconds(30) == pytest.approx(0.03)
    assert fast.now() >= START


# -- listings --------------------------------------------------------------------------------------------------


async def _run_sessions(emu: Emulator, cid: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        ids.append(emu.start_channel(cid).id)
        emu.clock.advance(10)
        emu.stop_channel(cid)
        emu.clock.advance(1)
    return ids


async def test_sessions_pagination_and_sorting(api: Api, emu: Emulator) -> None:
    cid = (await api.create())["id"]
    other = (await api.create("other"))["id"]
    ids = await _run_sessions(emu, cid, 5)
    await _run_sessions(emu, other, 2)

    pages = [(await api.sessions(cid, page=p, perPage=2)).body for p in (1, 2, 3, 4)]
    assert [(b["total"], b["count"], b["page"], b["perPage"]) for b in pages] == [
        (5, 2, 1, 2), (5, 2, 2, 2), (5, 1, 3, 2), (5, 0, 4, 2),
    ]  # fmt: skip
    assert [s["id"] for b in pages for s in b["data"]] == ids[::-1]

    ascending = (await api.sessions(cid, sort="createdAt|asc")).body
    assert [s["id"] for s in ascending["data"]] == ids
    everything = (await api.call("GET", "/sessions", params={"perPage": "1000"})).body
    assert everything["total"] == 7


@pytest.mark.parametrize(
    "params",
    [
        {"q": "{not json"},
        {"q": '["channelId"]'},
        {"q": '{"colour": "red"}'},
        {"sort": "colour|desc"},
        {"sort": "updatedAt|sideways"},
        {"page": "0"},
        {"page": "one"},
        {"perPage": "0"},
        {"perPage": "1001"},
    ],
)
async def test_bad_listing_parameters_answer_400(api: Api, params: dict[str, str]) -> None:
    reply = await api.call("GET", "/sessions", params=params)
    assert reply.status == 400 and reply.body["message"]


async def test_events_are_newest_first_and_pages_are_deterministic(api: Api, emu: Emulator) -> None:
    cid = (await api.create())["id"]
    sid = emu.start_channel(cid).id
    # The clock does not move, yet every event gets its own, later, timestamp.
    added = [emu.add_event(sid, f"custom_{i}") for i in range(7)]
    assert all(a.created_at < b.created_at for a, b in itertools.pairwise(added))
    # Two events at the very same scripted time are ordered by id.
    same = datetime(2030, 1, 1, tzinfo=timezone.utc)
    twins = [emu.add_event(sid, "twin", at=same) for _ in range(2)]

    seen = []
    for page in (1, 2, 3, 4):
        body = (await api.events(sid, page=page, perPage=3)).body
        assert body["total"] == 10
        seen += [e["id"] for e in body["data"]]
    expected = [t.id for t in sorted(twins, key=lambda e: e.id, reverse=True)]
    expected += [e.id for e in reversed([emu.sessions[sid].events[0], *added])]
    assert seen == expected

    plain = await api.call("GET", "/events", params={"q": json.dumps({"sessionId": sid}), "perPage": "100"})
    assert plain.body["total"] == 10
    nobody = await api.call("GET", "/events", params={"q": json.dumps({"sessionId": "nobody"})})
    assert nobody.status == 200 and nobody.body["data"] == [] and nobody.body["total"] == 0


async def test_scripting_hooks_accept_values_the_sdk_does_not_know(api: Api, emu: Emulator) -> None:
    cid = (await api.create())["id"]
    sid = emu.start_channel(cid).id
    event = emu.add_event(sid, "transcoder_restarted", message="hi", actor="robot")
    emu.set_status(sid, "degraded")
    assert (await api.call("GET", f"/sessions/{sid}/status")).body == {"status": "degraded"}
    newest = (await api.events(sid)).body["data"][0]
    assert newest == msgspec.to_builtins(event)
    assert (newest["action"], newest["actor"], newest["message"]) == ("transcoder_restarted", "robot", "hi")
    with pytest.raises(EmulatorError) as missing:
        emu.add_event("nobody", "x")
    assert missing.value.status == 404


async def test_control_methods_refuse_impossible_moves(emu: Emulator) -> None:
    cid = emu.create_channel("x").id
    with pytest.raises(EmulatorError, match="start it first"):
        emu.connect_publisher(cid)
    session = emu.start_channel(cid)
    with pytest.raises(EmulatorError, match="no signal"):
        emu.interrupt_signal(session.id)
    emu.connect_publisher(session.id)
    with pytest.raises(EmulatorError, match="already has a publisher"):
        emu.connect_publisher(cid)
    with pytest.raises(EmulatorError, match="not interrupted"):
        emu.restore_signal(cid)
    emu.disconnect_publisher(cid)
    emu.connect_publisher(cid)  # a publisher coming back restores the signal
    assert [e.action for e in session.events][-2:] == ["signal_interrupted", "signal_restored"]
    assert session.status == "live" and session.deadline is None
    emu.stop_channel(cid)
    with pytest.raises(EmulatorError, match="has ended"):
        emu.connect_publisher(session.id)


async def test_seeded_emulators_are_reproducible() -> None:
    async def ids(seed: int) -> list[str]:
        async with Emulator(manual_clock=True, seed=seed, start_time=START) as emu:
            cid = emu.create_channel().id
            return [cid, emu.start_channel(cid).id, emu.sessions[emu.channels[cid].current_session_id or ""].name]

    assert await ids(3) == await ids(3) != await ids(4)


async def test_client_is_bound_to_the_emulator(emu: Emulator) -> None:
    client = emu.client(timeout=5.0)
    try:
        assert client.base_url == emu.url
    finally:
        await client.aclose()


async def test_url_before_start_is_an_error() -> None:
    emu = Emulator()
    with pytest.raises(RuntimeError, match="not started"):
        _ = emu.url
    await emu.close()  # closing what never started is harmless
