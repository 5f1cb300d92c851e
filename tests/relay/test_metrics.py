"""Metrics: what a Prometheus scrape and a health probe see, with counters fed and leases held or lost."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sigma_async.relay import DeliveryError
from sigma_async.relay._leases import ReplicaLeases, open_bucket
from sigma_async.relay._metrics import RelayMetrics, metrics_server
from sigma_async.testing._nats import NatsServer
from sigma_async.transitions import Live

TTL = 1.2

LIVE = Live(session_id="s1", source="status", at=datetime.now(timezone.utc), id="s1:live")


class Scraper:
    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http, self.base = http, f"http://127.0.0.1:{port}"

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with self.http.get(self.base + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def health(self) -> int:
        async with self.http.get(self.base + "/healthz") as response:
            return response.status


async def scraping(metrics: RelayMetrics, tg: Any) -> Scraper:
    port = await tg.start(lambda task_status: metrics_server(metrics, 0, host="127.0.0.1", task_status=task_status))
    return Scraper(aiohttp.ClientSession(), port)


@pytest.fixture
async def server() -> AsyncIterator[NatsServer]:
    async with NatsServer() as s:
        yield s


async def test_a_scrape_shows_deliveries_rejections_retries_lag_and_vendor_requests() -> None:
    metrics = RelayMetrics(sink="webhook", request_rate=lambda: 12.5)
    async with anyio.create_task_group() as tg:
        scraper = await scraping(metrics, tg)
        async with scraper.http:
            before = await scraper.samples()
            metrics.delivered(LIVE, 0.4)
            metrics.delivered(LIVE, 2.5)
            metrics.rejected(LIVE, "410 Gone")
            metrics.retried(LIVE, ConnectionError())
            metrics.retried(LIVE, DeliveryError("answered 401", reason="401"))
            for status in (200, 200, 429):
                metrics.response("sessions.status", status)
            after = await scraper.samples()
            assert await scraper.health() == 200
        tg.cancel_scope.cancel()

    sink = (("sink", "webhook"),)
    assert before[("sigma_relay_transitions_delivered_total", sink)] == 0  # present before the first delivery
    assert after[("sigma_relay_transitions_delivered_total", sink)] == 2
    assert after[("sigma_relay_transitions_rejected_total", sink)] == 1
    assert after[("sigma_relay_transitions_retried_total", sink)] == 2
    failures = "sigma_relay_delivery_failures_total"
    assert after[(failures, (("reason", "401"), ("sink", "webhook")))] == 1
    assert after[(failures, (("reason", "ConnectionError"), ("sink", "webhook")))] == 1
    assert after[("sigma_relay_delivery_lag_seconds_count", sink)] == 2
    assert after[("sigma_relay_delivery_lag_seconds_bucket", (("le", "0.5"), ("sink", "webhook")))] == 1
    assert after[("sigma_relay_delivery_lag_seconds_sum", sink)] == pytest.approx(2.9)
    assert after[("sigma_vendor_requests_total", (("route", "sessions.status"), ("status", "200")))] == 2
    assert after[("sigma_vendor_requests_total", (("route", "sessions.status"), ("status", "429")))] == 1
    assert after[("sigma_relay_request_rate", ())] == 12.5


async def test_two_relays_in_one_process_keep_their_own_counts() -> None:
    first, second = RelayMetrics(sink="file"), RelayMetrics(sink="file")
    first.delivered(LIVE, 1.0)

    assert b'sigma_relay_transitions_delivered_total{sink="file"} 1.0' in first.render()[0]
    assert b'sigma_relay_transitions_delivered_total{sink="file"} 0.0' in second.render()[0]


async def test_leases_held_and_health_follow_the_lease_loop(server: NatsServer) -> None:
    keys = [f"session:s{i}" for i in range(4)]
    async with open_bucket(f"{server.url}/relay", timeout=1.0) as kv, anyio.create_task_group() as tg:
        leases = ReplicaLeases(kv, replica="a", ttl=TTL)
        metrics = RelayMetrics(sink="nats", leases_held=lambda: len(leases.held), healthy=leases.healthy)
        scraper = await scraping(metrics, tg)
        async with scraper.http:
            assert await scraper.health() == 503  # no lease loop has run yet
            await tg.start(lambda task_status: leases.run(keys, _NoWatches(), task_status=task_status))
            samples = await scraper.samples()
            assert samples[("sigma_relay_leases_held", ())] == 4
            assert samples[("sigma_relay_healthy", ())] == 1
            assert await scraper.health() == 200

            await server.stop()  # leases cannot be renewed while their store is away
            await wait_until(lambda: not leases.healthy(), timeout=3 * TTL, what="unhealthy once the TTL passed")
            assert await scraper.health() == 503
            await server.start()
            await wait_until(leases.healthy, timeout=10, what="healthy again after the store came back")
            assert await scraper.health() == 200
        tg.cancel_scope.cancel()


def test_without_the_metrics_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"sigma-async\[metrics\]"):
        RelayMetrics()


async def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await anyio.sleep(0.02)


class _NoWatches:
    async def acquire(self, key: str) -> None:
        pass

    async def release(self, key: str, *, settle: float = 0.0) -> None:
        pass


async def test_serving_a_relays_metrics_counts_the_vendor_requests_its_client_makes() -> None:
    from sigma_async.relay import Relay
    from sigma_async.relay._metrics import serve_metrics
    from sigma_async.relay._sinks import MemorySink
    from sigma_async.testing import Emulator

    async with Emulator(manual_clock=True, seed=3) as emu, emu.client() as client:
        channel = emu.create_channel("metrics")
        sid = emu.start_channel(channel.id).id
        relay = Relay(client, MemorySink(), session_ids=[sid], interval=0.02)
        async with serve_metrics(0, relay, host="127.0.0.1") as metrics:
            await client.sessions.status(sid)
            await client.channels.get(channel.id)
            scrape = metrics.render()[0].decode()
    assert 'sigma_vendor_requests_total{route="sessions.status",status="200"} 1.0' in scrape
    assert 'sigma_vendor_requests_total{route="channels.get",status="200"} 1.0' in scrape
