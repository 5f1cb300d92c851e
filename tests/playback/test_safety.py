"""Playback reads: never the vendor's credentials or budget; every hostile origin ends as an error, never a raise."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from sigma_async import SigmaClient
from sigma_async._transport import PLAYLIST_MAX_BODY, FetchError, PublicReader
from sigma_async.playback import Prober
from sigma_async.testing import Emulator

from ._origin import Origin, serve

MEDIA = (
    b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.0,\nseg_7.ts\n#EXTINF:1.0,\nseg_8.ts\n"
)
MASTER = b"#EXTM3U\n" + b"".join(
    b"#EXT-X-STREAM-INF:BANDWIDTH=%d\n%s/index.m3u8\n" % (bw, name) for name, bw in ((b"good", 2000), (b"bad", 1000))
)


LAST_MODIFIED = "Mon, 22 Jul 2024 11:00:00 GMT"


def playlist(body: bytes, **headers: str) -> web.Response:
    return web.Response(body=body, content_type="application/vnd.apple.mpegurl", headers=headers)


async def slow_loris(request: web.Request) -> web.StreamResponse:
    # Answers at once, then a byte at a time, each well inside any read timeout: only a total deadline ends it.
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.apple.mpegurl"})
    await response.prepare(request)
    while True:
        await response.write(b"#")
        await asyncio.sleep(0.05)


async def silent(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await asyncio.sleep(3600)
    return response


async def huge_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.apple.mpegurl"})
    await response.prepare(request)
    await response.write(b"#EXTM3U\n")
    for _ in range(40):
        await response.write(b"#" * 64 * 1024)
    return response


def hostile_routes() -> dict[str, object]:
    bomb = gzip.compress(b"#EXTM3U\n" + b"#" * (4 * PLAYLIST_MAX_BODY))  # 4 KiB on the wire, 4 MiB inflated

    async def constant(body: bytes, **headers: str) -> web.Response:
        return playlist(body, **headers)

    return {
        "/good/index.m3u8": lambda r: constant(MEDIA, **{"Last-Modified": LAST_MODIFIED, "Date": LAST_MODIFIED}),
        "/master.m3u8": lambda r: constant(MASTER),
        "/big/index.m3u8": lambda r: constant(b"#EXTM3U\n" + b"#" * PLAYLIST_MAX_BODY),
        "/chunked/index.m3u8": huge_chunked,
        "/bomb/index.m3u8": lambda r: constant(bomb, **{"Content-Encoding": "gzip"}),
        "/slow/index.m3u8": slow_loris,
        "/silent/index.m3u8": silent,
        "/garbage/index.m3u8": lambda r: constant(b"<html><body>origin error</body></html>"),
        "/loop/index.m3u8": _redirect("/loop/index.m3u8"),
        "/hop/index.m3u8": _redirect("/good/index.m3u8"),
        "/gone/index.m3u8": _status(404),
    }


def _redirect(to: str) -> object:
    async def handle(request: web.Request) -> web.Response:
        raise web.HTTPFound(to)

    return handle


def _status(status: int) -> object:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=status)

    return handle


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with serve(Origin(routes=hostile_routes())) as running:  # type: ignore[arg-type]
        yield running


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    reader = PublicReader(timeout=1.0, read_timeout=0.5, max_redirects=3)
    yield Prober(reader)
    await reader.aclose()


def no_credentials(origin: Origin) -> None:
    assert origin.seen, "the origin was read"
    for path, headers in origin.seen:
        names = {h.lower() for h in headers}
        assert "authorization" not in names and "x-app-id" not in names and "cookie" not in names, path


# -- no credentials, no budget ----------------------------------------------------------------------------------


async def test_a_client_reads_playlists_without_its_credentials(origin: Origin) -> None:
    async with SigmaClient(username="u", secret_key="very-secret", app_id="app-1", base_url=origin.url) as client:
        report = await client.playback.probe(origin.url + "/hop/index.m3u8")  # a redirect on the way, too
        decisions = client.playback.watch(origin.url + "/master.m3u8", interval=0.05, stall_after=0.2)
        with anyio.fail_after(10):
            first = await anext(aiter(decisions))
        await decisions.aclose()  # type: ignore[attr-defined]
    assert report.state == "playing" and report.renditions[0].media_sequence == 7
    assert first.kind == "stalled"  # "bad" is listed but 404s: a stall, not an exception
    no_credentials(origin)


async def test_playback_reads_take_nothing_from_the_vendor_budget_and_never_touch_the_api() -> None:
    async with Emulator(manual_clock=True) as emu, emu.client(rate_limit=1.0) as client:
        channel = emu.create_channel("news")
        emu.start_channel(channel.id)
        emu.connect_publisher(channel.id)
        emu.clock.advance(8)
        heard: list[str] = []
        client.on_response = lambda route, status: heard.append(route)
        with anyio.fail_after(5):  # 1 request a second for the API: a probe through it would take seconds
            by_url = await client.playback.probe(channel.live_stream_url or "")
            for _ in range(5):
                await client.playback.probe(channel.live_stream_url or "")
        assert by_url.state == "playing" and client.stats.sent == 0 and heard == []
        api = [e for e in emu.journal if not e.path.startswith("/manifest/")]
        assert api == []
        by_id = await client.playback.probe(channel.id)
        assert by_id.state == "playing"
        assert heard == ["channels.get"] and client.stats.sent == 1  # the liveStreamUrl, and nothing else
        served = [e for e in emu.journal if e.path.startswith("/manifest/")]
        assert len(served) == 6 * 4 + 4
        for entry in served:
            assert not {"authorization", "x-app-id"} & {h.lower() for h in entry.headers}
        assert client.playback.prober.reader is not client._transport


async def test_the_clients_playlist_timeout_bounds_each_read(origin: Origin) -> None:
    async with SigmaClient(username="u", secret_key="s", app_id="a", base_url=origin.url) as client:
        client.playback.timeout = 0.5
        with anyio.fail_after(3):
            report = await client.playback.probe(origin.url + "/slow/index.m3u8")
    assert (report.state, report.error) == ("unreachable", "timeout")


async def test_closing_the_client_closes_the_playlist_pool() -> None:
    client = SigmaClient(username="u", secret_key="s", app_id="a", base_url="http://127.0.0.1:9")
    reader = client.playback.prober.reader
    await client.aclose()
    assert reader.closed
    with pytest.raises(RuntimeError):
        client.playback.prober  # noqa: B018


# -- bounded reads ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/big/index.m3u8", "too large"),
        ("/chunked/index.m3u8", "too large"),
        ("/bomb/index.m3u8", "too large"),
        ("/slow/index.m3u8", "timeout"),
        ("/silent/index.m3u8", "timeout"),
        ("/loop/index.m3u8", "too many redirects"),
    ],
)
async def test_the_reader_bounds_every_read_with_one_typed_error(origin: Origin, path: str, reason: str) -> None:
    reader = PublicReader(timeout=1.0, read_timeout=0.5, max_redirects=3)
    try:
        with anyio.fail_after(5):
            with pytest.raises(FetchError) as caught:
                await reader.get(origin.url + path)
    finally:
        await reader.aclose()
    assert caught.value.reason == reason
    if reason == "too many redirects":
        assert 2 <= origin.count(path) <= 4  # the first request and at most 3 redirects, then it stops


async def test_a_redirect_to_the_cdn_is_followed_and_the_final_url_kept(origin: Origin) -> None:
    reader = PublicReader()
    try:
        fetched = await reader.get(origin.url + "/hop/index.m3u8")
    finally:
        await reader.aclose()
    assert fetched.status == 200 and fetched.url == origin.url + "/good/index.m3u8" and fetched.body == MEDIA
    assert fetched.last_modified == fetched.date == LAST_MODIFIED


async def test_a_dead_origin_is_unreachable() -> None:
    reader = PublicReader(timeout=2.0)
    try:
        with pytest.raises(FetchError) as caught:
            await reader.get("http://127.0.0.1:9/master.m3u8")  # discard port: nothing listens
    finally:
        await reader.aclose()
    assert caught.value.reason == "unreachable"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/big/index.m3u8", "too large"),
        ("/bomb/index.m3u8", "too large"),
        ("/slow/index.m3u8", "timeout"),
        ("/garbage/index.m3u8", "not a playlist"),
        ("/loop/index.m3u8", "too many redirects"),
        ("/gone/index.m3u8", "HTTP 404"),
        ("/master.m3u8", None),
    ],
)
async def test_each_hostile_answer_is_an_error_on_that_rendition_never_an_exception(
    origin: Origin, prober: Prober, path: str, error: str | None
) -> None:
    with anyio.fail_after(5):
        read = await prober.read_rendition("x", origin.url + path)
        report = await prober.probe(origin.url + path)
    if error is None:  # a master where a media playlist was expected is not one either
        assert read.error == "not a playlist"
        return
    assert read.error == error
    assert report.state == "unreachable" and report.error == error and report.renditions == []


async def test_one_hostile_rendition_degrades_the_report_and_stalls_the_watch_with_its_reason(
    origin: Origin, prober: Prober
) -> None:
    for bad, reason in (("/slow/index.m3u8", "timeout"), ("/garbage/index.m3u8", "not a playlist")):
        origin.routes["/bad/index.m3u8"] = origin.routes[bad]
        report = await prober.probe(origin.url + "/master.m3u8")
        assert report.state == "degraded"
        assert [(r.name, r.state, r.error) for r in report.renditions] == [
            ("good", "playing", None), ("bad", "failed", reason),
        ]  # fmt: skip
        watch = prober.watch(origin.url + "/master.m3u8", interval=0.05, stall_after=0.3)
        with anyio.fail_after(10):
            decision = await anext(aiter(watch))
        await watch.aclose()  # type: ignore[attr-defined]
        assert decision.kind == "stalled" and "bad" in decision.renditions and reason in decision.reason
