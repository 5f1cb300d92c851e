"""What real servers and proxies do wrong: every answer either decodes or raises a typed, clear error."""

from __future__ import annotations

import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import quote, quote_plus

import hypothesis.strategies as st
import pytest
import samples
from _recorder import Recorder, Reply, recording_server
from hypothesis import HealthCheck, given, settings

from sigma_async import (
    APITimeoutError,
    ChannelCreate,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    SigmaClient,
    SigmaError,
)
from sigma_async import _protocol as proto

NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture
async def server() -> AsyncIterator[Recorder]:
    async with recording_server() as recorder:
        yield recorder


def client_for(server: Recorder, **kw: object) -> SigmaClient:
    return SigmaClient(username="u", secret_key="k", app_id="a", base_url=server.url, **kw)  # type: ignore[arg-type]


# -- decoding: arbitrary JSON in place of every response shape ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
DECODERS = [proto.CHANNEL_DECODER, proto.SESSION_PAGE_DECODER, proto.EVENT_PAGE_DECODER, proto.STATUS_DECODER]
SAMPLES = [samples.CHANNEL, samples.SESSIONS, samples.EVENTS, samples.STATUS]


def decodes_or_raises_typed(body: bytes) -> None:
    for decoder in DECODERS:
        with contextlib.suppress(ResponseDecodeError):
            proto.decode(proto.Response(200, body), decoder)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_decodes_or_raises_response_decode_error(value: object) -> None:
    decodes_or_raises_typed(json.dumps(value).encode())


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_response_decode_error(body: bytes) -> None:
    decodes_or_raises_typed(body)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += _paths(inner, (*prefix, i))
    return found


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_field_of_a_real_sample_replaced_by_any_json(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(SAMPLES) - 1))
    doc = json.loads(SAMPLES[index])
    path = data.draw(st.sampled_from(_paths(doc)))
    target = doc
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    target[path[-1]] = data.draw(json_values)  # type: ignore[index]
    with contextlib.suppress(ResponseDecodeError):
        proto.decode(proto.Response(200, json.dumps(doc).encode()), DECODERS[index])


def test_deeply_nested_json_is_a_decode_error_not_a_crash() -> None:
    decodes_or_raises_typed(b"[" * 100_000 + b"]" * 100_000)
    decodes_or_raises_typed(b'{"data":' * 5000 + b"1" + b"}" * 5000)
    err = proto.error_for(proto.Response(500, b"[" * 100_000), proto.build_get_channel("c"))
    assert isinstance(err, ServerError) and err.body.startswith("[[[")


# -- arbitrary strings as ids, names and tags ---------------------------------------------------------------------


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_any_string_id_is_a_plain_segment_or_refused(value: str) -> None:
    try:
        request = proto.build_get_channel(value)
    except ValueError:
        return
    assert request.path == f"/api/livestream/channels/{value}"
    assert "/" not in value and "?" not in value and "%" not in value and value not in (".", "..")
    listing = proto.build_list_sessions(value)
    q = dict(part.split("=", 1) for part in listing.target.split("?", 1)[1].split("&"))
    from urllib.parse import unquote

    assert json.loads(unquote(q["q"])) == {"channelId": value}


@settings(max_examples=300)
@given(st.text(max_size=60), st.lists(st.text(max_size=20), max_size=5), st.one_of(st.none(), st.text(max_size=40)))
def test_any_name_tags_and_description_round_trip_on_the_wire(name: str, tags: list[str], desc: str | None) -> None:
    try:
        spec = ChannelCreate(name=name, tags=tags, description=desc)
    except ValueError:
        assert not name.strip()
        return
    body = json.loads(proto.build_create_channel(spec).body or b"")
    assert (body["name"], body["tags"], body["description"]) == (name, tags, desc)


# -- a tour of bad answers over a real socket ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b'{"id": "c-1", "name": "trunc'),  # truncated body
        Reply(200, b""),  # empty 200
        Reply(200, b"<html><body>Welcome to nginx</body></html>", headers={"Content-Type": "text/html"}),
        Reply(200, b"[1, 2, 3]"),  # JSON of the wrong shape
        Reply(200, b"\xff\xfe\x00garbage"),
    ],
)
async def test_bad_2xx_bodies_raise_response_decode_error(server: Recorder, reply: Reply) -> None:
    server.reply(reply)
    async with client_for(server) as client:
        with pytest.raises(ResponseDecodeError, match="HTTP 200"):
            await client.channels.get("c-1")
    assert len(server.requests) == 1  # a decode error is not retried


async def test_wrong_content_type_with_a_json_body_still_decodes(server: Recorder) -> None:
    server.reply(Reply(200, samples.STATUS, headers={"Content-Type": "text/plain"}))
    async with client_for(server) as client:
        assert (await client.sessions.status("s")).status == "live"


async def test_an_html_error_page_from_a_proxy_is_a_server_error_with_its_text(server: Recorder) -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    server.reply(Reply(502, page, headers={"Content-Type": "text/html"}))
    async with client_for(server, retry=NO_RETRY) as client:
        with pytest.raises(ServerError, match="502 Bad Gateway") as info:
            await client.channels.get("c-1")
    assert info.value.status_code == 502


async def test_start_with_an_empty_200_body_is_fine(server: Recorder) -> None:
    server.reply(Reply(200, b""))
    async with client_for(server) as client:
        assert await client.channels.start("c-1") is None


async def test_a_listing_whose_total_lies_is_read_by_its_pages(server: Recorder) -> None:
    def page(start: int, count: int, total: int) -> Reply:
        return Reply(200, {"data": [{"id": f"s{i}"} for i in range(start, start + count)], "total": total})

    server.reply(page(0, 100, 10), page(100, 100, 10), page(200, 5, 10))  # total says 10: there are 205
    server.reply(page(0, 100, 10_000), page(100, 7, 10_000))  # total says 10,000: there are 107
    async with client_for(server) as client:
        assert len([s async for s in client.sessions.iter("c")]) == 205
        assert len([s async for s in client.sessions.iter("c")]) == 107


async def test_a_server_repeating_a_page_forever_cannot_loop_the_listing(server: Recorder) -> None:
    server.default = Reply(200, {"data": [{"id": f"e{i}", "action": "x", "createdAt": "2024-01-01T00:00:00Z"}
                                          for i in range(100)], "total": 10**9})
    async with client_for(server) as client:
        events = [e async for e in client.events.iter("s")]
    assert len(events) == 100 and len(server.requests) == 4


async def test_a_huge_answer_is_capped_not_read_whole(server: Recorder) -> None:
    huge = b'{"data": [' + b'{"id": "x"},' * 400_000 + b'{"id": "y"}]}'  # about 5 MB
    server.reply(Reply(200, huge), Reply(200, huge, chunks=50))
    async with client_for(server, max_response_bytes=1_000_000) as client:
        for _ in range(2):  # with a Content-Length, then chunked without one
            with pytest.raises(ResponseDecodeError, match="larger than 1000000 bytes"):
                await client.sessions.list("c")


async def test_a_compressed_bomb_is_capped_as_it_inflates(server: Recorder) -> None:
    inflated = b'{"data": [' + b'{"id": "x"},' * 2_000_000 + b'{"id": "y"}]}'  # 24 MB from about 50 KB
    bomb = gzip.compress(inflated)
    assert len(bomb) < 100_000
    server.reply(Reply(200, bomb, headers={"Content-Encoding": "gzip"}))
    server.reply(Reply(200, gzip.compress(samples.SESSIONS), headers={"Content-Encoding": "gzip"}))
    async with client_for(server, max_response_bytes=1_000_000) as client:
        with pytest.raises(ResponseDecodeError, match="larger than 1000000 bytes"):
            await client.sessions.list("c")
        assert len((await client.sessions.list("c")).data) == 2  # an honest compressed answer still decodes


async def test_a_slow_loris_answer_hits_the_timeout(server: Recorder) -> None:
    server.reply(Reply(200, samples.CHANNEL, chunks=100, chunk_delay=0.05))  # would take 5 s
    async with client_for(server, timeout=0.3, retry=NO_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await client.channels.get("c-1")
    assert time.monotonic() - started < 1.5


async def test_every_failure_is_a_sigma_error(server: Recorder) -> None:
    replies = [Reply(s, b"x") for s in (400, 401, 403, 404, 405, 409, 410, 418, 422, 429, 500, 501, 503, 599)]
    server.reply(*replies)
    async with client_for(server, retry=NO_RETRY) as client:
        for reply in replies:
            with pytest.raises(SigmaError) as info:
                await client.channels.get("c-1")
            assert info.value.status_code == reply.status  # type: ignore[attr-defined]


# -- a server that echoes the credentials back, in any encoding --------------------------------------------------

AWKWARD_SECRET = 'K\\ey"caf\u00e9/ 42+SECRET'  # backslash, quote, non-ASCII, slash, space, plus


def secret_forms(secret: str, token: str) -> set[str]:
    """Every way a server might write the secret or the Basic token into a body."""
    forms = {secret, token}
    for text in (secret, token):
        for ascii_only in (True, False):
            escaped = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
            forms |= {escaped, escaped.replace("/", "\\/"), escaped.upper() if ascii_only else escaped}
        forms |= {quote(text, safe=""), quote_plus(text), quote(text, safe="").lower()}
    return forms


async def test_a_secret_echoed_in_any_encoding_reaches_no_error_text_or_body(server: Recorder) -> None:
    client = SigmaClient(username="u", secret_key=AWKWARD_SECRET, app_id="a", base_url=server.url, retry=NO_RETRY)
    token = client.credentials.authorization.removeprefix("Basic ")
    forms = secret_forms(AWKWARD_SECRET, token)
    escaped_ascii = json.dumps(AWKWARD_SECRET)  # \\, \", \u00e9
    escaped_utf8 = json.dumps(AWKWARD_SECRET, ensure_ascii=False).replace("/", "\\/")
    escaped_token = json.dumps(token).replace("/", "\\/")
    server.reply(
        # 2xx bodies that do not decode: the message and the snippet come from the raw text.
        Reply(200, '{"id": 1, "echo": ' + escaped_ascii + "}"),
        Reply(200, '{"id": 1, "echo": ' + escaped_utf8 + ', "auth": ' + escaped_token + "}"),
        Reply(200, "x" * 790 + escaped_ascii),  # the secret straddles where the snippet's read stops
        # Error bodies: the secret as a key (nested too), and percent-encoded in plain text.
        Reply(400, {AWKWARD_SECRET: "bad key", "detail": [{"got": {AWKWARD_SECRET: token}}]}),
        Reply(401, f"invalid credentials secret_key={quote(AWKWARD_SECRET)} token={quote_plus(token)}"),
        Reply(422, '{"message": "bad ' + escaped_ascii[1:-1] + '"}'),
    )
    texts: list[str] = []
    async with client:
        for _ in range(3):
            with pytest.raises(ResponseDecodeError) as decode_error:
                await client.channels.get("c-1")
            texts += [str(decode_error.value), decode_error.value.snippet]
        for _ in range(3):
            with pytest.raises(SigmaError) as status_error:
                await client.channels.get("c-1")
            texts += [str(status_error.value), repr(status_error.value), repr(status_error.value.body)]  # type: ignore[attr-defined]
    assert any("***" in t for t in texts)  # the echoes were there, and were scrubbed
    for text in texts:
        for form in forms:
            assert form not in text, (form, text)
