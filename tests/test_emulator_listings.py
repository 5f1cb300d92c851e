"""The emulator's listings at scale: app-wide pages from an index that agrees with a full sort, one channel's
sessions without reading the others, many live sessions at once, and a server that takes its time."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_async import Event, Page, Session
from sigma_async.models import EventAction, Status
from sigma_async.testing import Emulator, EmulatorError
from sigma_async.testing._index import RecencyIndex
from sigma_async.testing._records import uuid4_from

T0 = datetime(2024, 7, 22, tzinfo=timezone.utc)
SESSION_PAGE = msgspec.json.Decoder(Page[Session])
EVENT_PAGE = msgspec.json.Decoder(Page[Event])


# -- the index ---------------------------------------------------------------------------------------------------

# Each step puts an id (of a few, so that ids are often written again) at a time: mostly later than any before,
# as servers write, sometimes earlier, as an edit or a scripted time can be.
_steps = st.lists(st.tuples(st.integers(0, 60), st.integers(-50, 2000)), max_size=400)


def _newest_first(latest: dict[Any, datetime], name: Any = str) -> list[Any]:
    return [k for k, _ in sorted(latest.items(), key=lambda kv: (kv[1], name(kv[0])), reverse=True)]


@settings(max_examples=150, deadline=None)
@given(steps=_steps, per_page=st.integers(1, 40), read_every=st.integers(1, 50))
def test_index_pages_are_those_of_a_full_sort(steps: list[tuple[int, int]], per_page: int, read_every: int) -> None:
    index: RecencyIndex[str] = RecencyIndex()
    latest: dict[str, datetime] = {}
    for step, (ident, jump) in enumerate(steps):
        clock = step + 1
        at = T0 + timedelta(microseconds=clock if jump >= 0 else clock + jump)
        name = f"id-{ident:03d}"
        index.put(name, at, name)
        latest[name] = at
        if step % read_every == 0:  # reads between writes: what the index keeps up to date as it goes
            assert index.page(2, per_page) == _newest_first(latest)[per_page : 2 * per_page]
    expected = _newest_first(latest)
    assert len(index) == len(expected)
    pages = -(-len(expected) // per_page) + 1  # one past the end: empty
    newest = [x for p in range(1, pages + 1) for x in index.page(p, per_page)]
    oldest = [x for p in range(1, pages + 1) for x in index.page(p, per_page, newest_first=False)]
    assert newest == expected
    assert oldest == expected[::-1]
    assert index.page(pages + 5, per_page) == []


def test_index_keeps_its_order_through_many_blocks_of_moves() -> None:
    # Far more items than one block, most written again many times (thinning old blocks until they merge).
    rng = random.Random(7)
    index: RecencyIndex[int] = RecencyIndex()
    latest: dict[int, int] = {}
    for step in range(60_000):
        item = rng.randrange(5000) if step >= 5000 else step
        at = step if rng.random() > 0.01 else max(0, step - rng.randrange(3000))
        index.put(str(item), T0 + timedelta(microseconds=at), item)
        latest[item] = T0 + timedelta(microseconds=at)
        if step % 997 == 0:
            where = rng.randrange(1, 40)
            assert index.page(where, 50) == _newest_first(latest)[(where - 1) * 50 : where * 50]
    expected = _newest_first(latest)
    assert [x for p in range(1, 52) for x in index.page(p, 100)] == expected
    assert index.page(37, 77) == expected[36 * 77 : 37 * 77]
    assert index.page(3, 1000, newest_first=False) == expected[::-1][2000:3000]


# -- listings over HTTP ------------------------------------------------------------------------------------------


class Api:
    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http, self.emu = http, emu
        self.auth = {"Authorization": emu.credentials.authorization, "X-App-Id": emu.app_id}

    async def get(self, path: str, **params: Any) -> bytes:
        async with self.http.get(self.emu.api_url + path, params=params, headers=self.auth) as reply:
            assert reply.status == 200, await reply.text()
            return await reply.read()

    async def post(self, path: str, body: object, *, auth: bool = True) -> tuple[int, Any]:
        headers = {**self.auth, "Content-Type": "application/json"} if auth else {}
        async with self.http.post(self.emu.url + path, data=json.dumps(body), headers=headers) as reply:
            return reply.status, await reply.json()


@pytest.fixture
async def api() -> Any:
    async with Emulator(seed=3) as emu, aiohttp.ClientSession() as http:
        yield Api(http, emu)


async def _all_pages(api: Api, path: str, decoder: Any, per_page: int, **params: Any) -> tuple[list[Any], int]:
    items: list[Any] = []
    page = 1
    while True:
        got = decoder.decode(await api.get(path, page=str(page), perPage=str(per_page), **params))
        items += got.data
        if len(got.data) < per_page:
            return items, got.total
        page += 1


async def test_app_wide_listings_agree_with_a_full_sort_as_sessions_change(api: Api) -> None:
    emu = api.emu
    sessions = emu.add_live_sessions(120)
    ended = emu.start_channel(emu.create_channel("short").id)
    emu.stop_channel(ended.channel.id)
    rng = random.Random(1)
    for session in rng.sample(sessions, 40):  # interrupted, some restored: rows and events move to the front
        emu.interrupt_signal(session.id)
        if rng.random() < 0.5:
            emu.restore_signal(session.id)
    late = emu.add_event(sessions[5].id, "custom", at=emu.clock.now() - timedelta(hours=1))  # dated in the past
    quiet = emu.add_event(sessions[6].id, "custom", bump_session=False)  # its row keeps its place

    for sort, reverse in (("updatedAt|desc", True), ("updatedAt|asc", False)):
        listed, total = await _all_pages(api, "/sessions", SESSION_PAGE, 17, sort=sort)
        rows = sorted(emu.sessions.values(), key=lambda s: (s.updated_at, s.id), reverse=reverse)
        assert total == len(rows) == 121
        assert [(s.id, s.status, s.updated_at) for s in listed] == [(s.id, s.status, s.updated_at) for s in rows]

        events, total = await _all_pages(api, "/events", EVENT_PAGE, 50, sort=sort)
        every = sorted(
            (e for s in emu.sessions.values() for e in s.events),
            key=lambda e: (e.updated_at, e.id), reverse=reverse,
        )  # fmt: skip
        assert total == len(every)
        assert [e.id for e in events] == [e.id for e in every]
    assert late.id in {e.id for e in events} and quiet.id in {e.id for e in events}


async def test_a_channel_lists_its_own_sessions_even_once_deleted(api: Api) -> None:
    emu = api.emu
    emu.add_live_sessions(50)
    channel = emu.create_channel("mine")
    mine = []
    for _ in range(3):
        mine.append(emu.start_channel(channel.id).id)
        emu.stop_channel(channel.id)
    emu.delete_channel(channel.id)  # its sessions stay listed
    q = json.dumps({"channelId": channel.id})
    page = SESSION_PAGE.decode(await api.get("/sessions", q=q, sort="createdAt|desc"))
    assert [s.id for s in page.data] == mine[::-1] and page.total == 3
    assert {s.status for s in page.data} == {Status.ENDED}
    nobody = SESSION_PAGE.decode(await api.get("/sessions", q=json.dumps({"channelId": "no-such-channel"})))
    assert nobody.data == [] and nobody.total == 0


async def test_many_live_sessions_at_once_in_process_and_over_the_bulk_route(api: Api) -> None:
    emu = api.emu
    made = emu.add_live_sessions(3, name="cam")
    assert [emu.channels[s.channel_id].name for s in made] == ["cam-1", "cam-2", "cam-3"]
    assert all(s.status == Status.LIVE and s.publisher_connected for s in made)
    assert [e.action for e in made[0].events] == [EventAction.INITIALIZE, EventAction.START, EventAction.STABLE]

    status, body = await api.post("/_emulator/live-sessions", {"count": 250, "stopTimeout": 30})
    assert status == 200 and len(body["sessionIds"]) == len(body["channelIds"]) == 250
    for sid, cid in zip(body["sessionIds"], body["channelIds"], strict=True):
        session = emu.sessions[sid]
        assert session.channel_id == cid and session.status == Status.LIVE
        assert emu.channels[cid].stop_timeout == 30
    listed = SESSION_PAGE.decode(await api.get("/sessions", perPage="1000"))
    assert listed.total == 253 and {s.status for s in listed.data} == {Status.LIVE}
    # The newest first: the last one made leads the listing.
    assert listed.data[0].id == body["sessionIds"][-1]

    assert (await api.post("/_emulator/live-sessions", {"count": 2}, auth=False))[0] == 401
    for bad in ({"count": -1}, {"count": "many"}, {}, {"count": 1, "name": " "}, {"count": 1, "extra": True}):
        status, error = await api.post("/_emulator/live-sessions", bad)
        assert status in (400, 422) and error["statusCode"] == status, (bad, error)
    assert len(emu.sessions) == 253  # nothing made by a refused request
    with pytest.raises(EmulatorError):
        emu.add_live_sessions(1, stop_timeout=-1)


async def test_latency_holds_every_api_answer_but_not_the_control_routes() -> None:
    async with Emulator(latency=30) as emu, aiohttp.ClientSession() as http:
        auth = {"Authorization": emu.credentials.authorization, "X-App-Id": emu.app_id}
        pending = asyncio.ensure_future(http.get(emu.api_url + "/sessions", headers=auth))
        with anyio.fail_after(10):  # answered at once, while the API request is held back
            async with http.post(emu.url + "/_emulator/live-sessions", data='{"count": 1}', headers=auth) as r:
                assert r.status == 200
            await emu.wait_for(lambda: emu.journal.count("GET /sessions") == 1)
        assert not pending.done()
        pending.cancel()
        emu.state.latency = 0  # settable while it runs
        with anyio.fail_after(10):
            async with http.get(emu.api_url + "/sessions", headers=auth) as reply:
                assert reply.status == 200
    with pytest.raises(ValueError, match="latency"):
        Emulator(latency=-1)


def test_ids_are_those_uuid_makes_from_the_same_bits() -> None:
    # Spelled out for speed: a seeded emulator still makes the ids uuid.UUID(int=..., version=4) would.
    made, bits = random.Random(11), random.Random(11)
    for _ in range(2000):
        ident = uuid4_from(made)
        assert ident == str(uuid.UUID(int=bits.getrandbits(128), version=4))
        assert uuid.UUID(ident).version == 4 and uuid.UUID(ident).variant == uuid.RFC_4122
