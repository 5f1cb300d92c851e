"""Pure protocol: build each API request and turn (status, headers, body) into a model or an error. No I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Final, TypeVar
from urllib.parse import quote

import msgspec

from ._config import secret_pattern
from .errors import APIStatusError, ResponseDecodeError, status_error_class
from .models import Channel, ChannelCreate, Event, Page, Session, SessionStatus

__all__ = [
    "API_PREFIX",
    "Operation",
    "Request",
    "Response",
    "build_create_channel",
    "build_delete_channel",
    "build_get_channel",
    "build_list_events",
    "build_list_sessions",
    "build_session_status",
    "build_start_channel",
    "build_stop_channel",
    "check_id",
    "decode",
    "error_for",
    "parse_retry_after",
    "redact_text",
]

M = TypeVar("M")

API_PREFIX: Final = "/api/livestream"
DEFAULT_SORT: Final = "updatedAt|desc"
SNIPPET_CHARS: Final = 200

# Ids go into the URL path: only RFC 3986 unreserved characters, so nothing can change the path or the query.
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")
_SORT_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}\|(?:asc|desc)")


class Operation:
    """Names of operations, which decide what may be retried (see ``RetryPolicy``)."""

    CREATE = "create"
    GET = "get"
    START = "start"
    STOP = "stop"
    DELETE = "delete"
    LIST = "list"


class Request(msgspec.Struct, frozen=True, gc=False):
    """One HTTP request, ready to send: ``target`` is the path and already-encoded query."""

    method: str
    target: str
    operation: str
    body: bytes | None = None

    @property
    def path(self) -> str:
        """The path without the query: what logs and errors show."""
        return self.target.partition("?")[0]


# Structs rather than dataclasses: built on every call, and a frozen dataclass costs ten times as much to make.
class Response(msgspec.Struct, frozen=True, gc=False):
    """What the transport got back: the status, the (capped) body, and for errors the headers the SDK reads."""

    status: int
    body: bytes
    request_id: str | None = None
    retry_after: str | None = None
    location: str | None = None


def check_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a plain path segment; raise ``ValueError`` before anything is sent."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not _ID_RE.fullmatch(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ValueError(
            f"{what} {shown!r} is not a valid id (letters, digits, '.', '_', '~', '-'; at most 200)"
        )
    return value


def _check_paging(page: int, per_page: int) -> None:
    for name, value in (("page", page), ("per_page", per_page)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@lru_cache(maxsize=64)
def _quoted_sort(sort: str) -> str:
    if not isinstance(sort, str) or not _SORT_RE.fullmatch(sort):
        raise ValueError(f"sort must look like 'updatedAt|desc', got {sort!r}")
    return quote(sort, safe="")


def _quoted_filter(template: object) -> tuple[str, str]:
    """The URL-encoded JSON ``q`` filter around its id: ``template`` holds ``"{}"`` where the id goes."""
    head, _, tail = quote(json.dumps(template, separators=(",", ":")), safe="").partition("%7B%7D")
    return head, tail


# The q filter is JSON in the query string, as the API page's curl examples show once decoded. Ids are
# checked to be unreserved characters, which JSON and URL encoding both leave alone: so the encoded filter is
# a fixed prefix and suffix around the id, built once instead of json.dumps + quote on every poll.
_SESSIONS_Q: Final = _quoted_filter({"channelId": "{}"})
_EVENTS_Q: Final = _quoted_filter({"$and": [{"sessionId": "{}"}]})


def _listing(resource: str, q: tuple[str, str], ident: str, page: int, per_page: int, sort: str) -> str:
    _check_paging(page, per_page)
    return (
        f"{API_PREFIX}/{resource}?q={q[0]}{ident}{q[1]}&sort={_quoted_sort(sort)}&page={page}&perPage={per_page}"
    )


_CREATE_ENCODER: Final = msgspec.json.Encoder()


def build_create_channel(spec: ChannelCreate) -> Request:
    if not isinstance(spec, ChannelCreate):
        raise TypeError(f"create() takes a ChannelCreate, got {type(spec).__name__}")
    body = _CREATE_ENCODER.encode(spec.to_body())
    return Request("POST", f"{API_PREFIX}/channels", Operation.CREATE, body)


def build_get_channel(channel_id: str) -> Request:
    return Request("GET", f"{API_PREFIX}/channels/{check_id(channel_id, 'channel id')}", Operation.GET)


def build_start_channel(channel_id: str) -> Request:
    cid = check_id(channel_id, "channel id")
    return Request("PATCH", f"{API_PREFIX}/channels/{cid}/start", Operation.START)


def build_stop_channel(channel_id: str) -> Request:
    cid = check_id(channel_id, "channel id")
    return Request("DELETE", f"{API_PREFIX}/channels/{cid}/stop", Operation.STOP)


def build_delete_channel(channel_id: str) -> Request:
    # The API page's section 6 shows the sessions curl by mistake; delete is DELETE on the channel itself.
    return Request("DELETE", f"{API_PREFIX}/channels/{check_id(channel_id, 'channel id')}", Operation.DELETE)


def build_list_sessions(channel_id: str, page: int = 1, per_page: int = 100, sort: str = DEFAULT_SORT) -> Request:
    cid = check_id(channel_id, "channel id")
    return Request("GET", _listing("sessions", _SESSIONS_Q, cid, page, per_page, sort), Operation.LIST)


def build_session_status(session_id: str) -> Request:
    sid = check_id(session_id, "session id")
    return Request("GET", f"{API_PREFIX}/sessions/{sid}/status", Operation.GET)


def build_list_events(session_id: str, page: int = 1, per_page: int = 100, sort: str = DEFAULT_SORT) -> Request:
    sid = check_id(session_id, "session id")
    return Request("GET", _listing("events", _EVENTS_Q, sid, page, per_page, sort), Operation.LIST)


def build_list_app_events(page: int = 1, per_page: int = 100, sort: str = DEFAULT_SORT) -> Request:
    """The events of every session of the app: the listing without ``q`` (see ``Events.list_app``)."""
    return _app_listing("events", page, per_page, sort)


def build_list_app_sessions(page: int = 1, per_page: int = 100, sort: str = DEFAULT_SORT) -> Request:
    """The sessions of every channel of the app: the listing without ``q`` (see ``Sessions.list_app``)."""
    return _app_listing("sessions", page, per_page, sort)


def _app_listing(resource: str, page: int, per_page: int, sort: str) -> Request:
    _check_paging(page, per_page)
    return Request(
        "GET", f"{API_PREFIX}/{resource}?sort={_quoted_sort(sort)}&page={page}&perPage={per_page}", Operation.LIST
    )


def route_of(request: Request) -> str:
    """The operation a request makes, without ids: ``channels.get``, ``sessions.status``, ``events.list_app``."""
    parts = request.path[len(API_PREFIX) + 1 :].split("/")
    resource, operation = parts[0], request.operation
    if operation == Operation.LIST:
        return f"{resource}.list" if "q=" in request.target else f"{resource}.list_app"
    if operation == Operation.GET:
        return f"{resource}.{parts[-1]}" if len(parts) > 2 else f"{resource}.get"
    return f"{resource}.{operation}"


CHANNEL_DECODER: Final = msgspec.json.Decoder(Channel)
SESSION_PAGE_DECODER: Final = msgspec.json.Decoder(Page[Session])
EVENT_PAGE_DECODER: Final = msgspec.json.Decoder(Page[Event])
STATUS_DECODER: Final = msgspec.json.Decoder(SessionStatus)


def decode(response: Response, decoder: msgspec.json.Decoder[M], secrets: Sequence[str] = ()) -> M:
    """Decode a 2xx body, or raise ``ResponseDecodeError`` naming the status and a redacted snippet.

    ``secrets`` (the caller's credentials) are scrubbed from the snippet, should the server echo them.
    """
    try:
        return decoder.decode(response.body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        # RecursionError: msgspec's answer to hostile nesting depth, which must not escape as a crash.
        snippet = _snippet(response.body, secrets)
        # msgspec's reason may quote a value (an invalid enum or date) from the body: redacted too.
        reason = redact_text(str(exc), secrets)
        raise ResponseDecodeError(
            f"HTTP {response.status}: response is not the expected JSON ({reason}); body starts {snippet!r}",
            status_code=response.status,
            snippet=snippet,
        ) from None


_ERROR_DECODER: Final = msgspec.json.Decoder(Any)


def error_for(
    response: Response, request: Request, *, secrets: Sequence[str] = (), now: float | None = None
) -> APIStatusError:
    """The typed error for a non-2xx answer, with the server's message and request id.

    ``secrets`` are scrubbed from the message and body: a server may echo the credentials it refused.
    ``now`` (epoch seconds) dates a ``Retry-After`` given as an HTTP date.
    """
    body: Any
    try:
        body = _ERROR_DECODER.decode(response.body) if response.body else None
    except (msgspec.DecodeError, RecursionError):
        body = _snippet(response.body, secrets)
    body = _redact_body(body, secrets)
    message = _message_of(body) or _default_message(response)
    kw: dict[str, Any] = {
        "status_code": response.status,
        "body": body,
        "request_id": response.request_id,
        "method": request.method,
        "path": request.path,
    }
    return status_error_class(response.status)(
        message, retry_after=parse_retry_after(response.retry_after, now=now), **kw
    )


def _default_message(response: Response) -> str:
    if 300 <= response.status < 400:
        return f"unexpected redirect to {response.location or 'an unnamed location'} (not followed)"
    return "no message from the server"


def _message_of(body: Any) -> str | None:
    if isinstance(body, str):
        return redact_text(body) or None
    if not isinstance(body, Mapping):
        return None
    for key in ("message", "error", "detail", "msg"):
        value = body.get(key)
        if isinstance(value, list) and value:
            # Validation errors often come as a list of messages.
            value = "; ".join(str(v) for v in value[:5])
        if isinstance(value, str) and value:
            return redact_text(value)[:SNIPPET_CHARS * 2]
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or bad.

    Only plain decimal seconds (``3``, ``1.5``) or an HTTP date count: ``1_0``, ``1e3``, ``0x10``, ``nan``
    are not delta-seconds and read as absent. A negative number or a date in the past means "now" (0).
    ``inf`` is read as what it says, a wait longer than any cap, so the call raises ``RateLimitError`` at
    once rather than retrying as though no wait had been asked for.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS_RE.fullmatch(value):
        return max(0.0, float(value))
    if value.lower() in ("inf", "+inf", "infinity", "+infinity"):
        return float("inf")
    if value.lower() in ("-inf", "-infinity"):
        return 0.0
    from email.utils import parsedate_to_datetime  # only for the rare HTTP-date form

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    import time

    try:
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, ValueError, OSError):
        return None
    return max(0.0, seconds)


# ``float()`` accepts far more than delta-seconds: underscores, exponents, "nan", full-width digits.
_DELTA_SECONDS_RE: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)


# Keys whose values are secrets when a body is echoed into an error (a channel body carries the S3 secret key).
_SECRET_VALUE_RE: Final = re.compile(
    r'("?(?:secretKey|secret_key|secret|password|streamToken|stream_token|token|authorization)"?\s*[:=]\s*)'
    r'("(?:[^"\\]|\\.)*"?|[^\s,}&]+)',
    re.IGNORECASE,
)
_BASIC_RE: Final = re.compile(r"(Basic\s+)[A-Za-z0-9+/=]{4,}", re.IGNORECASE)


def redact_text(text: str, secrets: Sequence[str] = ()) -> str:
    """Hide ``secrets``, values of secret-looking keys and Basic tokens in text that may reach a message or log.

    Each secret is found in every form a server may echo it in: as is, JSON-escaped or percent-encoded.
    """
    if secrets and (pattern := secret_pattern(tuple(secrets))) is not None:
        text = pattern.sub("***", text)
    text = _BASIC_RE.sub(r"\1***", text)
    return _SECRET_VALUE_RE.sub(lambda m: m.group(1) + '"***"', text)


def _snippet(body: bytes, secrets: Sequence[str] = ()) -> str:
    # A secret cut in two where the read stops is not found whole: read on past the limit by the longest form a
    # secret can take (12 characters each, percent-encoded), and drop that tail, which could hold its first part.
    extra = max((len(s) * 12 for s in secrets), default=0)
    limit = SNIPPET_CHARS * 4 + extra
    text = redact_text(body[:limit].decode("utf-8", "replace"), secrets)
    if len(body) > limit:
        text = text[: max(0, len(text) - extra)]
    return text[:SNIPPET_CHARS] + ("..." if len(text) > SNIPPET_CHARS else "")


_SECRET_KEYS: Final = frozenset(
    {"secretkey", "secret_key", "secret", "password", "streamtoken", "stream_token", "token", "authorization"}
)


def _redact_body(body: Any, secrets: Sequence[str] = ()) -> Any:
    if isinstance(body, Mapping):
        # Keys too: a server may echo the credential it refused as the key of an object.
        return {
            _redact_body(k, secrets): (
                "***" if isinstance(k, str) and k.lower() in _SECRET_KEYS else _redact_body(v, secrets)
            )
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [_redact_body(v, secrets) for v in body]
    if isinstance(body, str):
        return redact_text(body, secrets)
    return body
