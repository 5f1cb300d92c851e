"""The pure protocol layer: requests built, bodies decoded, errors mapped. No sockets, no event loop."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
import samples

from sigma_async import (
    AuthenticationError,
    BadRequestError,
    ChannelCreate,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    S3Destination,
    ServerError,
    UnprocessableEntityError,
    catchup_playlist_url,
)
from sigma_async import _protocol as proto
from sigma_async.errors import APIStatusError


def query_of(request: proto.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.target).query).items()}


def test_create_body_reproduces_the_api_page_example() -> None:
    spec = ChannelCreate(
        name="<channel_name>",
        destination_catchup=S3Destination(
            access_key="<s3_access_key>", bucket="<bucket_name>", endpoint="<s3_end_point>",
            secret_key="<s3_secrect_key>", region="<s3_region>",
        ),
    )
    request = proto.build_create_channel(spec)
    assert (request.method, request.target) == ("POST", "/api/livestream/channels")
    assert request.body is not None
    assert json.loads(request.body) == samples.CREATE_BODY_EXAMPLE


def test_catchup_follows_the_destination_unless_set() -> None:
    assert json.loads(proto.build_create_channel(ChannelCreate(name="n")).body or b"")["catchup"] is False
    with pytest.raises(ValueError, match="catchup=True needs"):
        ChannelCreate(name="n", catchup=True)


@pytest.mark.parametrize(
    ("build", "method", "path"),
    [
        (proto.build_get_channel, "GET", "/api/livestream/channels/c-1"),
        (proto.build_start_channel, "PATCH", "/api/livestream/channels/c-1/start"),
        (proto.build_stop_channel, "DELETE", "/api/livestream/channels/c-1/stop"),
        (proto.build_delete_channel, "DELETE", "/api/livestream/channels/c-1"),
        (proto.build_session_status, "GET", "/api/livestream/sessions/c-1/status"),
    ],
)
def test_single_resource_requests(build: object, method: str, path: str) -> None:
    request = build("c-1")  # type: ignore[operator]
    assert (request.method, request.target, request.body) == (method, path, None)


def test_listing_queries_are_the_api_pages() -> None:
    sessions = proto.build_list_sessions("ch-1", 2, 50)
    assert sessions.path == "/api/livestream/sessions"
    q = query_of(sessions)
    assert json.loads(q["q"]) == {"channelId": "ch-1"}
    assert (q["sort"], q["page"], q["perPage"]) == ("updatedAt|desc", "2", "50")
    events = proto.build_list_events("s-1")
    assert events.path == "/api/livestream/events"
    assert json.loads(query_of(events)["q"]) == {"$and": [{"sessionId": "s-1"}]}


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", "a?b=1", "a#b", "a b", "é", "a\nb", "x" * 201, "%2e"])
def test_ids_that_are_not_plain_segments_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid id"):
        proto.build_get_channel(bad)
    with pytest.raises(ValueError, match="not a valid id"):
        proto.build_list_events(bad)


def test_empty_channel_name_is_refused() -> None:
    for name in ("", "   "):
        with pytest.raises(ValueError, match="non-empty"):
            ChannelCreate(name=name)


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (1, 0), (-1, 5), (True, 5)])
def test_bad_paging_is_refused(page: int, per_page: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        proto.build_list_sessions("c", page, per_page)


def test_every_api_page_sample_decodes() -> None:
    ok = proto.Response(200, samples.CHANNEL)
    ch = proto.decode(ok, proto.CHANNEL_DECODER)
    assert ch.input.rtmp_server == "rtmp://103.245.251.51:1935/livestream"
    assert ch.input.stream_token == "42efe-a050270cbbab47cbfacd-3519d"
    assert ch.live_stream_url and ch.live_stream_url.endswith("/master.m3u8")
    assert ch.current_session_id == "977cc345-d771-4223-9306-07c2b9d49a34"
    assert ch.created_at == datetime(2024, 7, 22, 10, 34, 36, 772000, tzinfo=timezone.utc)
    assert ch.destination_catchup and ch.destination_catchup.s3 and ch.destination_catchup.s3.bucket == "vod"
    created = proto.decode(proto.Response(201, samples.CREATED), proto.CHANNEL_DECODER)
    assert created.id == "42efeee4-e94e-4444-b0a6-90850413519d"
    page = proto.decode(proto.Response(200, samples.SESSIONS), proto.SESSION_PAGE_DECODER)
    assert (page.total, page.count, page.page, page.per_page, len(page.data)) == (2, 2, 1, 100, 2)
    first = page.data[0]
    assert first.client_info and first.client_info.tc_url == "rtmp://103.245.251.51:1935/livestream"
    assert first.client_info.client_id == "y1799srf" and first.duration == 40
    assert first.finished_at and first.started_at and first.finished_at > first.started_at
    assert proto.decode(proto.Response(200, samples.STATUS), proto.STATUS_DECODER).status == "live"
    events = proto.decode(proto.Response(200, samples.EVENTS), proto.EVENT_PAGE_DECODER)
    assert [e.action for e in events.data] == ["ended", "stable"]
    assert events.data[0].message == "Kênh đã kết thúc"


def test_unknown_fields_and_values_never_fail_decoding() -> None:
    body = b'{"status": "transcoding-warmup", "newField": {"x": [1, 2]}}'
    assert proto.decode(proto.Response(200, body), proto.STATUS_DECODER).status == "transcoding-warmup"
    event = b'{"data":[{"id":"e","action":"gpu_swapped","createdAt":"2024-01-01T00:00:00Z","extra":1}]}'
    assert proto.decode(proto.Response(200, event), proto.EVENT_PAGE_DECODER).data[0].action == "gpu_swapped"
    channel = b'{"id":"c","type":"passthrough","mode":"turbo","status":"frozen","surprise":null}'
    assert proto.decode(proto.Response(200, channel), proto.CHANNEL_DECODER).mode == "turbo"


@pytest.mark.parametrize("body", [b"", b"<html>502 Bad Gateway</html>", b'{"status": 5}', b"{trunc", b"[]"])
def test_bad_bodies_raise_response_decode_error(body: bytes) -> None:
    with pytest.raises(ResponseDecodeError, match="HTTP 200") as info:
        proto.decode(proto.Response(200, body), proto.STATUS_DECODER)
    assert info.value.status_code == 200


def test_decode_error_snippet_hides_secrets() -> None:
    body = b'{"destinationCatchup": {"s3": {"secretKey": "S3-SECRET-VALUE-123"}}, "id": 5}'
    with pytest.raises(ResponseDecodeError) as info:
        proto.decode(proto.Response(200, body), proto.CHANNEL_DECODER)
    assert "S3-SECRET-VALUE-123" not in str(info.value)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError), (404, NotFoundError),
        (409, ConflictError), (422, UnprocessableEntityError), (429, RateLimitError), (500, ServerError),
        (502, ServerError), (503, ServerError), (504, ServerError), (418, APIStatusError),
    ],
)
def test_error_statuses_map_to_classes(status: int, cls: type[APIStatusError]) -> None:
    request = proto.build_get_channel("c-1")
    body = msgspec.json.encode({"statusCode": status, "message": "server says no"})
    err = proto.error_for(proto.Response(status, body, request_id="req-9"), request)
    assert type(err) is cls
    assert (err.status_code, err.message, err.request_id) == (status, "server says no", "req-9")
    assert "server says no" in str(err) and "GET /api/livestream/channels/c-1" in str(err)


def test_error_message_from_list_and_from_text() -> None:
    request = proto.build_get_channel("c-1")
    err = proto.error_for(proto.Response(422, b'{"message": ["name must not be empty", "bad mode"]}'), request)
    assert err.message == "name must not be empty; bad mode"
    err = proto.error_for(proto.Response(502, b"<html>Bad Gateway</html>"), request)
    assert "Bad Gateway" in err.message
    err = proto.error_for(proto.Response(302, b"", location="https://evil.example"), request)
    assert "redirect" in err.message


def test_retry_after_forms() -> None:
    assert proto.parse_retry_after("3") == 3.0
    assert proto.parse_retry_after(" 1.5 ") == 1.5
    assert proto.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert proto.parse_retry_after("soon") is None
    assert proto.parse_retry_after("nan") is None
    assert proto.parse_retry_after("-5") == 0.0
    assert proto.parse_retry_after(None) is None
    err = proto.error_for(proto.Response(429, b"{}", retry_after="3600"), proto.build_get_channel("c"))
    assert isinstance(err, RateLimitError) and err.retry_after == 3600


def test_catchup_playlist_url() -> None:
    assert (
        catchup_playlist_url("https://s3.example.com/bucket/", "977cc345")
        == "https://s3.example.com/bucket/sigma-livestream/977cc345/catchup/master-catchup.m3u8"
    )
    with pytest.raises(ValueError):
        catchup_playlist_url("https://s3.example.com", "../x")
