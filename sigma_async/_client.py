"""``SigmaClient`` and its resource namespaces: ``channels``, ``sessions``, ``events``, ``playback``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from . import _protocol as proto
from ._budget import BudgetStats, RequestBudget
from ._config import DEFAULT_BASE_URL, USER_AGENT, Credentials, check_base_url, settings_from_env
from ._events_page import decode_event_page
from ._observe import note_failure
from ._paging import ITER_PAGE_SIZE, walk_pages
from ._protocol import Request, Response
from ._retry import PauseGate, RetryPolicy, RetryRunner
from ._transport import DEFAULT_MAX_BODY, Transport
from .bulk import BulkResult, ProgressCallback, ResultCallback, run_bounded
from .errors import APIStatusError, SigmaError
from .models import Channel, ChannelCreate, Event, Page, Session, SessionStatus
from .playback import Playback

if TYPE_CHECKING:
    from .transitions import Transition
    from .watch import Monitor

__all__ = ["Channels", "Events", "SigmaClient", "Sessions"]

logger = logging.getLogger("sigma_async")
M = TypeVar("M")
Sleep = Callable[[float], Awaitable[None]]

class SigmaClient:
    """An async client of the Sigma Livestream API, owning one pooled HTTP session.

    >>> async with SigmaClient(username="u", secret_key="s", app_id="a") as client:
    ...     ch = await client.channels.create(ChannelCreate(name="news"))
    ...     await client.channels.start(ch.id)

    One client serves any number of concurrent calls; share it. ``max_connections`` bounds the pool,
    ``timeout`` bounds each attempt (connect to last byte), ``max_response_bytes`` what one answer may hold.
    ``rate_limit`` caps the requests per second of every call together (fairly: first come, first served);
    ``adaptive`` lowers the rate when the server answers 429 and climbs back gradually (see ``stats``).
    Plain ``http://`` is refused for any host but loopback unless ``allow_insecure_http=True``.
    """

    def __init__(
        self,
        *,
        username: str,
        secret_key: str,
        app_id: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 100,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_BODY,
        sleep: Sleep | None = None,
        rate_limit: float | None = None,
        adaptive: bool = True,
    ) -> None:
        self.credentials = Credentials(username=username, secret_key=secret_key, app_id=app_id)
        self._secrets = self.credentials.secrets()  # scrubbed from any error text the server echoes them in
        self.base_url = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        headers = {
            "Authorization": self.credentials.authorization,
            "X-App-Id": app_id,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self._transport = Transport(
            self.base_url, headers, timeout=timeout, max_connections=max_connections, max_body=max_response_bytes
        )
        # ``sleep`` is injectable so that tests of retries and Retry-After pauses run without waiting.
        self._sleep: Sleep = sleep or asyncio.sleep
        self._gate = PauseGate(self._sleep)
        self._runner = RetryRunner(self.retry, self._gate, self._sleep)
        self._budget = RequestBudget(rate_limit, adaptive, sleep=self._sleep)
        #: ``on_response(route, status)`` hears of every answer (status 0: none), e.g. for metrics; ``route`` names
        #: the operation (``sessions.status``), never an id.
        self.on_response: Callable[[str, int], object] | None = None
        self._warned: dict[int, None] = {}  # events already reported as unreadable (insertion-ordered, bounded)
        self.channels = Channels(self)
        self.sessions = Sessions(self)
        self.events = Events(self)
        #: Playback health of channels' HLS output, read without these credentials (see ``Playback``).
        self.playback = Playback(self.channels.get)

    @classmethod
    def from_env(cls, env_file: str | os.PathLike[str] | None = None, **overrides: Any) -> SigmaClient:
        """Build a client from ``SIGMA_USERNAME``, ``SIGMA_SECRET_KEY``, ``SIGMA_APP_ID``, ``SIGMA_BASE_URL``,
        and optionally a ``.env`` file; keyword arguments win over both."""
        settings: dict[str, Any] = dict(settings_from_env(env_file))
        settings.update({k: v for k, v in overrides.items() if v is not None})
        missing = [name for name in ("username", "secret_key", "app_id") if not settings.get(name)]
        if missing:
            names = ", ".join(f"SIGMA_{m.upper()}" for m in missing)
            raise ValueError(f"missing credentials: set {names} (environment or .env file) or pass them")
        return cls(**settings)

    def __repr__(self) -> str:
        creds = self.credentials
        return f"SigmaClient(base_url={self.base_url!r}, username={creds.username!r}, app_id={creds.app_id!r})"

    async def __aenter__(self) -> SigmaClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pools. Safe to call twice."""
        await self._transport.aclose()
        await self.playback.aclose()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    @property
    def paused_for(self) -> float:
        """Seconds left of a server-requested pause (``Retry-After``) that holds back every call."""
        return self._gate.remaining()

    @property
    def stats(self) -> BudgetStats:
        """A snapshot: requests sent (retries included), retried, throttled (429), the rate now allowed (None:
        no limit) and the rate measured over the last second."""
        return self._budget.stats(retried=self._runner.retries)

    async def send(self, request: Request) -> Response:
        """Send a prepared request with retries; raise the typed error for any non-2xx answer."""
        # The first attempt is inlined (no retry machinery, no extra coroutine frames): it is the hot path of
        # every call, and most calls succeed at once. Without a ceiling or a recent 429 the budget only counts.
        if self._gate.until:
            await self._gate.wait()
        budget = self._budget
        if budget.engaged:
            await budget.acquire()
        else:
            budget.note_send()
        epoch = budget.epoch
        try:
            return self._answer(request, await self._transport.send(request), epoch)
        except SigmaError as exc:
            self._failed(request, exc)
            return await self._runner.recover(self._send_once, request, exc)

    def _failed(self, request: Request, exc: SigmaError) -> None:
        note_failure(exc)
        if self.on_response is not None and not isinstance(exc, APIStatusError):
            self.on_response(proto.route_of(request), 0)  # no HTTP answer (or one too big to read)

    async def _send_once(self, request: Request) -> Response:
        # A retry takes its turn in the budget like any other request.
        budget = self._budget
        if budget.engaged:
            await budget.acquire()
        else:
            budget.note_send()
        epoch = budget.epoch
        try:
            return self._answer(request, await self._transport.send(request), epoch)
        except SigmaError as exc:
            self._failed(request, exc)
            raise

    def _answer(self, request: Request, response: Response, epoch: int) -> Response:
        """The response if it is a success; else the typed error, raised (a 429 told to the budget first).

        A plain function, not a coroutine: it runs on every call's hot path."""
        if self.on_response is not None:
            self.on_response(proto.route_of(request), response.status)
        if response.status == 429:
            self._budget.on_throttle(epoch)
        else:
            self._budget.note_answer(epoch)  # let through: what the server accepts bounds how far a 429 cuts
            if response.status < 300:
                return response
        raise proto.error_for(response, request, secrets=self._secrets, now=time.time())

    async def _call(self, request: Request, decoder: msgspec.json.Decoder[M]) -> M:
        return proto.decode(await self.send(request), decoder, self._secrets)

    # The watchers sit a layer above the client (they poll through it); imported on first use.
    def watch_session(
        self, session_id: str, *, interval: float = 2.0, since: str | None = None, max_silence: float | None = None,
        **kw: Any,
    ) -> AsyncGenerator[Transition, None]:
        """Yield the transitions of one session until it ends. See ``sigma_async.watch.watch_session``."""
        from .watch import watch_session

        return watch_session(self, session_id, interval=interval, since=since, max_silence=max_silence, **kw)

    def watch_channel(self, channel_id: str, *, interval: float = 2.0, **kw: Any) -> AsyncGenerator[Transition, None]:
        """Yield transitions of every session of a channel, following ``current_session_id``."""
        from .watch import watch_channel

        return watch_channel(self, channel_id, interval=interval, **kw)

    def monitor(
        self, *, session_ids: Iterable[str] = (), channel_ids: Iterable[str] = (), interval: float = 2.0, **kw: Any
    ) -> Monitor:
        """Watch many sessions and channels at once, as one async iterator. See ``Monitor``."""
        from .watch import Monitor

        return Monitor(self, session_ids=session_ids, channel_ids=channel_ids, interval=interval, **kw)

    async def wait_for(self, session_id: str, kind: str, *, timeout: float | None = None, **kw: Any) -> Transition:
        """The first transition of ``kind`` for a session; ``WatchError`` if the session ends first."""
        from .watch import wait_for

        return await wait_for(self, session_id, kind, timeout=timeout, **kw)


class _Resource:
    __slots__ = ("_client",)

    def __init__(self, client: SigmaClient) -> None:
        self._client = client


class Channels(_Resource):
    """Create, read, start, stop and delete channels, one at a time or in bulk."""

    __slots__ = ()

    async def create(self, spec: ChannelCreate) -> Channel:
        """Create a channel. Not retried after an ambiguous failure, so it never makes a duplicate."""
        return await self._client._call(proto.build_create_channel(spec), proto.CHANNEL_DECODER)

    async def get(self, channel_id: str) -> Channel:
        return await self._client._call(proto.build_get_channel(channel_id), proto.CHANNEL_DECODER)

    async def start(self, channel_id: str) -> None:
        """Start a live session; ``get(channel_id).current_session_id`` then names it."""
        await self._client.send(proto.build_start_channel(channel_id))

    async def stop(self, channel_id: str) -> None:
        """Stop the channel's live session."""
        await self._client.send(proto.build_stop_channel(channel_id))

    async def delete(self, channel_id: str) -> None:
        await self._client.send(proto.build_delete_channel(channel_id))

    async def create_many(
        self,
        specs: Iterable[ChannelCreate],
        *,
        concurrency: int = 16,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        rate_limit: float | None = None,
    ) -> list[BulkResult[Channel]]:
        """Create many channels with at most ``concurrency`` in flight. Each slot, in input order, is the
        ``Channel`` or the ``SigmaError`` that item raised. Specs are all checked before anything is sent.

        ``on_progress(done, total)`` runs as each item settles, ``on_result(index, result)`` too. If the call is
        cancelled, each item then in flight is passed to ``on_result`` with an ``OutcomeUnknownError`` (its
        channel may exist), so ``on_result`` has heard of every item the server may have acted on. A 401 or 403
        stops the run: items not yet sent get that error in their slot. ``rate_limit`` caps request starts per
        second across the run, under the client's own ``rate_limit``.
        """
        specs = list(specs)
        requests = [proto.build_create_channel(spec) for spec in specs]
        call = self._client._call
        return await run_bounded(
            [partial(call, r, proto.CHANNEL_DECODER) for r in requests],
            concurrency=concurrency, on_progress=on_progress, on_result=on_result, rate_limit=rate_limit,
        )

    async def start_many(
        self,
        channel_ids: Iterable[str],
        *,
        concurrency: int = 16,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        rate_limit: float | None = None,
    ) -> list[BulkResult[None]]:
        """Start many channels; see ``create_many`` for the options and result shape."""
        return await self._ids_many(
            proto.build_start_channel, channel_ids, concurrency, on_progress, on_result, rate_limit
        )

    async def stop_many(
        self,
        channel_ids: Iterable[str],
        *,
        concurrency: int = 16,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        rate_limit: float | None = None,
    ) -> list[BulkResult[None]]:
        """Stop many channels; see ``create_many`` for the options and result shape."""
        return await self._ids_many(
            proto.build_stop_channel, channel_ids, concurrency, on_progress, on_result, rate_limit
        )

    async def delete_many(
        self,
        channel_ids: Iterable[str],
        *,
        concurrency: int = 16,
        on_progress: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        rate_limit: float | None = None,
    ) -> list[BulkResult[None]]:
        """Delete many channels; see ``create_many`` for the options and result shape."""
        return await self._ids_many(
            proto.build_delete_channel, channel_ids, concurrency, on_progress, on_result, rate_limit
        )

    async def _ids_many(
        self,
        build: Callable[[str], Request],
        channel_ids: Iterable[str],
        concurrency: int,
        on_progress: ProgressCallback | None,
        on_result: ResultCallback | None,
        rate_limit: float | None,
    ) -> list[BulkResult[None]]:
        # Every id is checked before anything is sent, as create_many checks every spec.
        requests = [build(cid) for cid in channel_ids]
        return await run_bounded(
            [partial(self._send_none, r) for r in requests],
            concurrency=concurrency, on_progress=on_progress, on_result=on_result, rate_limit=rate_limit,
        )

    async def _send_none(self, request: Request) -> None:
        await self._client.send(request)


class Sessions(_Resource):
    """Sessions of a channel, and the live status of one session."""

    __slots__ = ()

    async def list(
        self, channel_id: str, *, page: int = 1, per_page: int = 100, sort: str = proto.DEFAULT_SORT
    ) -> Page[Session]:
        request = proto.build_list_sessions(channel_id, page, per_page, sort)
        return await self._client._call(request, proto.SESSION_PAGE_DECODER)

    def iter(self, channel_id: str, *, per_page: int = ITER_PAGE_SIZE) -> AsyncIterator[Session]:
        """Every session of a channel, newest first, reading pages lazily."""
        proto.build_list_sessions(channel_id, 1, per_page)  # validate now, not at the first ``anext``
        return walk_pages(lambda p: self.list(channel_id, page=p, per_page=per_page), per_page, lambda s: s.id)

    async def list_app(
        self, *, page: int = 1, per_page: int = 100, sort: str = proto.DEFAULT_SORT
    ) -> Page[Session]:
        """Sessions of every channel of the app, newest first: what a fed monitor starts from.

        The vendor page documents session listings filtered by channel only; this is the same listing without
        ``q``. A server that refuses it answers with an error, and the monitor reads each session on its own.
        """
        request = proto.build_list_app_sessions(page, per_page, sort)
        return await self._client._call(request, proto.SESSION_PAGE_DECODER)

    async def status(self, session_id: str) -> SessionStatus:
        return await self._client._call(proto.build_session_status(session_id), proto.STATUS_DECODER)


class Events(_Resource):
    """Events of a session (stable, interrupted, ended, ...)."""

    __slots__ = ()

    async def list(
        self, session_id: str, *, page: int = 1, per_page: int = 100, sort: str = proto.DEFAULT_SORT
    ) -> Page[Event]:
        request = proto.build_list_events(session_id, page, per_page, sort)
        return self._decoded(request, await self._client.send(request))

    async def list_app(self, *, page: int = 1, per_page: int = 100, sort: str = proto.DEFAULT_SORT) -> Page[Event]:
        """Events of every session of the app, newest first: the listing ``poll="feed"`` reads.

        The vendor page documents event listings filtered by session only; this is the same listing without
        ``q``. A server that refuses it answers with an error (see ``monitor(poll="auto")``).
        """
        request = proto.build_list_app_events(page, per_page, sort)
        return self._decoded(request, await self._client.send(request))

    def _decoded(self, request: Request, response: Response) -> Page[Event]:
        # Not a coroutine of its own: one frame less on the read every poll makes.
        client = self._client
        page, skipped = decode_event_page(response, client._secrets)
        for item in skipped:
            # Once per item, not once per poll that reads it again.
            digest = hash(item)
            if digest not in client._warned:
                client._warned[digest] = None
                if len(client._warned) > 1024:
                    del client._warned[next(iter(client._warned))]
                logger.warning("%s: skipped an event with no id or no readable time", request.path)
        return page

    def iter(self, session_id: str, *, per_page: int = ITER_PAGE_SIZE) -> AsyncIterator[Event]:
        """Every event of a session, newest first, reading pages lazily."""
        proto.build_list_events(session_id, 1, per_page)
        return walk_pages(lambda p: self.list(session_id, page=p, per_page=per_page), per_page, lambda e: e.id)
