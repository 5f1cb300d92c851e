"""The emulated HTTP API on aiohttp.web: routes, credential checks, error bodies, faults and the journal."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from .._config import Credentials
from ..models import ChannelCreateBody, Page, SessionStatus
from ._control import add_control_routes, is_control_route
from ._faults import Fault, FaultPlan, Journal, JournalEntry
from ._hls import HlsOrigin, add_output_routes, is_output_route
from ._query import ListQuery, parse_list_query
from ._state import EmulatorError, EmulatorState
from ._throttle import Throttle

__all__ = ["BASE_PATH", "build_app"]

BASE_PATH = "/api/livestream"
SESSION_FILTERS = ("channelId", "id", "status", "name", "appId")
SESSION_SORTS = ("updatedAt", "createdAt", "startedAt", "finishedAt", "name", "status", "id")
EVENT_FILTERS = ("sessionId", "id", "action", "actor")
EVENT_SORTS = ("updatedAt", "createdAt", "action", "id")
#: What a ``malformed`` fault answers by default: the start of a JSON object, cut off.
MALFORMED_BODY = b'{"id": "5017085c-d828-491d-837f-21'

_create_decoder = msgspec.json.Decoder(ChannelCreateBody)
_encoder = msgspec.json.Encoder()


def build_app(
    state: EmulatorState, faults: FaultPlan, journal: Journal, credentials: Credentials,
    throttle: Throttle | None = None, origin: HlsOrigin | None = None,
) -> web.Application:
    """The aiohttp application serving ``state`` under ``/api/livestream``, and its channels' HLS output."""
    api = _Api(state, faults, journal, credentials)
    api.throttle = throttle or Throttle()
    app = web.Application(middlewares=[api.middleware])
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
        "POST /channels": api.create_channel,
        "GET /channels/{id}": api.get_channel,
        "PATCH /channels/{id}/start": api.start_channel,
        "DELETE /channels/{id}/stop": api.stop_channel,
        "DELETE /channels/{id}": api.delete_channel,
        "GET /sessions": api.list_sessions,
        "GET /sessions/{id}/status": api.session_status,
        "GET /events": api.list_events,
    }
    for route, handler in routes.items():
        method, path = route.split(" ", 1)
        app.router.add_route(method, BASE_PATH + path, handler)
    origin = origin or HlsOrigin(state)
    add_output_routes(app, origin)
    add_control_routes(app, state, origin)
    return app


class _Api:
    def __init__(self, state: EmulatorState, faults: FaultPlan, journal: Journal, credentials: Credentials) -> None:
        self.state = state
        self.faults = faults
        self.journal = journal
        self.credentials = credentials
        self._token = credentials.authorization.removeprefix("Basic ").encode()
        self.throttle = Throttle()

    # -- the request pipeline -------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = _route_name(request)
        entry = self.journal.begin(
            JournalEntry(
                method=request.method,
                path=request.path,
                route=route,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read() if request.can_read_body else b"",
                at=self.state.clock.now(),
            )
        )
        status: int | None = None
        try:
            if (route is not None and (is_control_route(route) or is_output_route(route))) or self.throttle.admit():
                response, entry.fault = await self._answer(request, handler, route, entry)
            else:  # over the server's rate: turned away before anything else is looked at
                response = throttled_response(self.throttle)
            if response is None:
                # No HTTP answer at all: the client sees the connection closed under it.
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=599)
            response.headers["X-Request-Id"] = str(uuid.uuid4())
            status = response.status
            return response
        finally:
            self.journal.end(entry, status)

    async def _answer(
        self, request: web.Request, handler: Handler, route: str | None, entry: JournalEntry
    ) -> tuple[web.StreamResponse | None, Fault | None]:
        # The control routes drive the test, and the HLS output stands for a CDN: API faults and latency leave
        # both alone.
        special = route is not None and (is_control_route(route) or is_output_route(route))
        if self.state.latency and not special:
            await asyncio.sleep(self.state.latency)  # the answer is made after it, from the state as it is then
        # Timers are also checked here, so a request never sees a session that should have ended already.
        self.state.tick()
        fault = self.faults.pick(route, entry) if route is not None and not special else None
        if fault is not None and not fault.after:
            if fault.latency:
                await asyncio.sleep(fault.latency)
            if fault.answers:
                return _fault_response(fault), fault
        response = await self._handle(request, handler, credentials=not is_output_route(route))
        if fault is not None and fault.after:
            if fault.latency:
                await asyncio.sleep(fault.latency)
            if fault.answers:
                return _fault_response(fault), fault
        return response, fault

    async def _handle(self, request: web.Request, handler: Handler, *, credentials: bool) -> web.StreamResponse:
        try:
            if credentials:
                self._authenticate(request)
            return await handler(request)
        except EmulatorError as exc:
            return error_response(exc.status, exc.message)
        except web.HTTPException as exc:
            # The router's own 404 and 405, in the API's JSON error shape.
            response = error_response(exc.status, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    def _authenticate(self, request: web.Request) -> None:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            raise EmulatorError(401, "Missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic" or not hmac.compare_digest(token.strip().encode(), self._token):
            raise EmulatorError(401, "Invalid credentials")
        app_id = request.headers.get("X-App-Id")
        if app_id is None:
            raise EmulatorError(403, "Missing X-App-Id header")
        if app_id != self.credentials.app_id:
            raise EmulatorError(403, "X-App-Id does not match these credentials")

    # -- routes ---------------------------------------------------------------------------------------------

    async def create_channel(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            spec = _create_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise EmulatorError(422, str(exc)) from None
        except msgspec.DecodeError as exc:
            raise EmulatorError(400, f"Body must be a JSON object: {exc}") from None
        return json_response(self.state.create_channel(spec).to_model(), status=201)

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.state.channel(request.match_info["id"]).to_model())

    async def start_channel(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.state.start_channel(request.match_info["id"]).to_model())

    async def stop_channel(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.state.stop_channel(request.match_info["id"]).to_model())

    async def delete_channel(self, request: web.Request) -> web.StreamResponse:
        self.state.delete_channel(request.match_info["id"])
        return json_response({})

    async def list_sessions(self, request: web.Request) -> web.StreamResponse:
        query = self._capped(parse_list_query(request.query, filter_fields=SESSION_FILTERS, sort_fields=SESSION_SORTS))
        state = self.state
        channel_filter = [value for attr, value in query.filters if attr == "channel_id"]
        if not query.filters and query.sort_attr == "updated_at":
            # Every session of the app by its last change: from the index, O(page) however many there are.
            index = state.session_index
            items, total = index.page(query.page, query.per_page, newest_first=query.descending), len(index)
        elif channel_filter:
            # One channel's sessions: only those are read, not every session of the app.
            ids = state.channel_sessions.get(channel_filter[0]) if isinstance(channel_filter[0], str) else None
            sessions = state.sessions
            items, total = query.select([sessions[sid] for sid in ids or () if sid in sessions])
        else:
            items, total = query.select(state.sessions.values())
        page = Page(
            data=[s.to_model() for s in items], total=total, count=len(items), page=query.page, per_page=query.per_page
        )
        return json_response(page)

    async def session_status(self, request: web.Request) -> web.StreamResponse:
        session = self.state.session(request.match_info["id"])
        return json_response(SessionStatus(status=session.status))

    async def list_events(self, request: web.Request) -> web.StreamResponse:
        query = self._capped(parse_list_query(request.query, filter_fields=EVENT_FILTERS, sort_fields=EVENT_SORTS))
        session_id = query.value_of("session_id")
        state = self.state
        if session_id is not None:
            # The usual question is about one session: read only its events.
            session = state.sessions.get(session_id)
            items, total = query.select(list(session.events) if session is not None else [])
        elif not state.app_wide_listings:
            raise EmulatorError(400, "q is required: list the events of one session ({\"sessionId\": id})")
        elif not query.filters and query.sort_attr == "updated_at":
            # The app-wide feed: from the index, so that a page costs O(page) however many events there are.
            index = state.event_index
            items, total = index.page(query.page, query.per_page, newest_first=query.descending), len(index)
        else:
            items, total = query.select([e for s in state.sessions.values() for e in s.events])
        raw = state.raw_events
        data: list[Any] = [msgspec.Raw(raw[e.id]) if e.id in raw else e for e in items] if raw else list(items)
        page = Page(data=data, total=total, count=len(items), page=query.page, per_page=query.per_page)
        return json_response(page)

    def _capped(self, query: ListQuery) -> ListQuery:
        cap = self.state.max_per_page
        return query if cap is None or query.per_page <= cap else dataclasses.replace(query, per_page=cap)


def json_response(payload: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(payload), status=status, content_type="application/json")


def throttled_response(throttle: Throttle) -> web.Response:
    """429, as a rate-limited API answers, with ``Retry-After`` when the throttle sets one."""
    headers = {"Retry-After": _format_retry_after(throttle.retry_after)} if throttle.retry_after is not None else None
    return error_response(429, f"Rate limit of {throttle.rate:g} requests per second exceeded", headers=headers)


def error_response(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """The API's error shape: ``{"statusCode": 404, "message": "...", "error": "Not Found"}``."""
    body = {"statusCode": status, "message": message, "error": _phrase(status)}
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json", headers=headers)


def _fault_response(fault: Fault) -> web.Response | None:
    if fault.drop:
        return None
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = _format_retry_after(fault.retry_after)
    content_type = fault.content_type or "application/json"
    if fault.malformed or fault.body is not None:
        body = fault.body if fault.body is not None else MALFORMED_BODY
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(body=raw, status=fault.status or 200, headers=headers, content_type=content_type)
    assert fault.status is not None
    message = fault.message or f"{_phrase(fault.status)} (injected)"
    return error_response(fault.status, message, headers=headers)


def _format_retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _route_name(request: web.Request) -> str | None:
    """``"GET /channels/{id}"`` for a request that matched a route of the API; None otherwise."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    resource = info.route.resource
    if resource is None:
        return None
    return f"{info.route.method} {resource.canonical.removeprefix(BASE_PATH)}"
