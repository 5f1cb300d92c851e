"""The relay's Prometheus metrics and health check, served on ``--metrics-addr`` (``/metrics``, ``/healthz``).

>>> async with serve_metrics(9464, relay):   # counts what ``relay`` delivers; its leases and request rate
...     await relay.run()

Needs the ``metrics`` extra (``prometheus_client``), imported when a ``RelayMetrics`` is made. Each one has its own
``CollectorRegistry``, so two relays in one process (or one test after another) never share counters.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from ..transitions import Transition
from ._delivery import failure_reason

if TYPE_CHECKING:
    from ._relay import Relay

__all__ = ["LAG_BUCKETS", "RelayMetrics", "metrics_server", "serve_metrics"]

#: Delivery lag buckets (seconds from a transition's ``at`` to its acceptance): polling puts most of it near one
#: interval; the tail is outages and failovers.
LAG_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 1800.0)


class RelayMetrics:
    """The relay's counters in a registry of their own; an ``Observer`` for ``Relay(observer=...)``.

    ``leases_held``, ``request_rate`` and ``healthy`` are read at each scrape: the number of leases this replica
    holds, the client's current request rate (requests/s) and whether the relay's loops are alive. Vendor
    requests are counted through ``response(route, status)``, for whatever calls the client makes.
    """

    def __init__(
        self,
        *,
        sink: str = "sink",
        leases_held: Callable[[], int] | None = None,
        request_rate: Callable[[], float] | None = None,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        prometheus = _prometheus()
        self.registry = registry = prometheus.CollectorRegistry(auto_describe=True)
        self.sink = sink
        self._healthy = healthy
        #: The port ``serve_metrics`` listens on, once it does.
        self.port: int | None = None
        self._delivered = prometheus.Counter(
            "sigma_relay_transitions_delivered", "Transitions the sink accepted.", ["sink"], registry=registry
        )
        self._rejected = prometheus.Counter(
            "sigma_relay_transitions_rejected",
            "Transitions the sink refused for good (skipped).",
            ["sink"],
            registry=registry,
        )
        self._retried = prometheus.Counter(
            "sigma_relay_transitions_retried",
            "Delivery attempts that failed and were retried.",
            ["sink"],
            registry=registry,
        )
        self._failures = prometheus.Counter(
            "sigma_relay_delivery_failures",
            "Failed delivery attempts, by reason: the receiver's HTTP status, timeout, connection, ...",
            ["sink", "reason"],
            registry=registry,
        )
        self._lag = prometheus.Histogram(
            "sigma_relay_delivery_lag_seconds",
            "Seconds from a transition's time to its acceptance by the sink.",
            ["sink"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._requests = prometheus.Counter(
            "sigma_vendor_requests",
            "Requests to the Sigma API, by route and HTTP status.",
            ["route", "status"],
            registry=registry,
        )
        held = prometheus.Gauge(
            "sigma_relay_leases_held", "Watch keys this replica holds a lease on.", registry=registry
        )
        held.set_function(_reading(leases_held))
        rate = prometheus.Gauge(
            "sigma_relay_request_rate", "The client's current request rate (requests/s).", registry=registry
        )
        rate.set_function(_reading(request_rate))
        up = prometheus.Gauge(
            "sigma_relay_healthy", "1 while the relay's loops are alive and its leases renewed.", registry=registry
        )
        up.set_function(lambda: 1.0 if self.healthy() else 0.0)
        self._stalled: set[str] = set()  # sessions whose output is stalled, by their delivered records
        stalled = prometheus.Gauge(
            "sigma_relay_playback_stalled",
            "Sessions whose HLS output is stalled now (from playback_stalled/playback_resumed records delivered).",
            registry=registry,
        )
        stalled.set_function(lambda: float(len(self._stalled)))
        # Present from the first scrape, at zero: a dashboard can tell "nothing yet" from "not reporting".
        for counter in (self._delivered, self._rejected, self._retried):
            counter.labels(sink=sink)
        self._lag.labels(sink=sink)

    # -- Observer ------------------------------------------------------------------------------------------

    def delivered(self, transition: Transition, lag: float) -> None:
        self._delivered.labels(sink=self.sink).inc()
        self._lag.labels(sink=self.sink).observe(max(0.0, lag))
        if transition.kind == "playback_stalled":
            self._stalled.add(transition.session_id)
        elif transition.kind in ("playback_resumed", "ended"):
            self._stalled.discard(transition.session_id)

    def rejected(self, transition: Transition, detail: str) -> None:
        self._rejected.labels(sink=self.sink).inc()

    def retried(self, transition: Transition, error: BaseException) -> None:
        self._retried.labels(sink=self.sink).inc()
        self._failures.labels(sink=self.sink, reason=failure_reason(error)).inc()

    # -- the rest ------------------------------------------------------------------------------------------

    def response(self, route: str, status: int) -> None:
        """Count one answer from the Sigma API; ``route`` is the operation (``sessions.status``), not the path."""
        self._requests.labels(route=route, status=str(status)).inc()

    def healthy(self) -> bool:
        """What ``/healthz`` answers: the ``healthy`` callable's verdict, or True without one."""
        try:
            return self._healthy is None or bool(self._healthy())
        except Exception:  # a health check that cannot tell is a failing one
            return False

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its content type."""
        prometheus = _prometheus()
        return prometheus.generate_latest(self.registry), prometheus.CONTENT_TYPE_LATEST


@contextlib.asynccontextmanager
async def serve_metrics(port: int, relay: Relay, *, host: str = "0.0.0.0") -> AsyncIterator[RelayMetrics]:
    """Count what ``relay`` does (it becomes the relay's observer) and serve it on ``host:port`` while inside.

    ``host`` defaults to every interface, as exporters do; ``metrics.port`` is the port listened on (the one
    ``port=0`` picked). Leases held and health come from the relay's ownership when it has them
    (``ReplicaLeases``), the request rate from ``relay.client.stats`` when the client keeps one, vendor requests
    from ``client.on_response``.
    """
    ownership: Any = relay.ownership
    held = getattr(ownership, "held", None)
    metrics = RelayMetrics(
        sink=type(relay.sink).__name__.removesuffix("Sink").lower() or "sink",
        leases_held=(lambda: len(ownership.held)) if held is not None else None,
        request_rate=lambda: _request_rate(relay.client),
        healthy=getattr(ownership, "healthy", None),
    )
    if relay.observer is None:
        relay.observer = metrics
    client = relay.client
    if getattr(client, "on_response", "absent") is None:
        client.on_response = metrics.response  # every vendor request, by route and status
    async with anyio.create_task_group() as tg:
        metrics.port = await tg.start(functools.partial(metrics_server, metrics, port, host=host))
        try:
            yield metrics
        finally:
            tg.cancel_scope.cancel()


async def metrics_server(
    metrics: RelayMetrics,
    port: int,
    *,
    host: str = "0.0.0.0",
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` and ``/healthz`` until cancelled; ``task_status.started(port)`` once listening.

    ``port=0`` picks a free one (the started value says which). ``host`` defaults to every interface so that a
    scraper in another pod or host reaches it; the page holds counts only, never ids or credentials.
    """
    from aiohttp import web

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def health(request: web.Request) -> web.Response:
        # Answering at all shows the event loop is alive; the verdict adds the leases' renewals.
        if metrics.healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="unhealthy: leases not renewed within their TTL\n")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server: Any = site._server  # aiohttp has no public way to learn the port that 0 picked
        task_status.started(server.sockets[0].getsockname()[1] if server and server.sockets else port)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


def _request_rate(client: Any) -> float:
    """Requests sent over the last second, from ``client.stats`` (a property or a method); NaN without one."""
    stats = getattr(client, "stats", None)
    if callable(stats):
        stats = stats()
    rate = getattr(stats, "measured_rate", None)
    return math.nan if rate is None else float(rate)


def _reading(source: Callable[[], float] | None) -> Callable[[], float]:
    """A gauge's reading: NaN without a source or when it fails (Prometheus shows a gap, not a false zero)."""

    def read() -> float:
        if source is None:
            return math.nan
        try:
            return float(source())
        except Exception:
            return math.nan

    return read


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            "the relay's --metrics-port needs prometheus_client: pip install 'sigma-async[metrics]'"
        ) from None
    return prometheus_client
