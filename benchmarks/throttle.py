"""The adaptive request budget against a server that throttles: accepted requests/s and share throttled.

The emulator runs as its own process (``python -m sigma_async.testing --throttle R``), answering 429 past R
requests a second. Many concurrent callers read one channel as fast as they can through one client, once with
``adaptive=False`` (retries and backoff only) and once with ``adaptive=True``, each for the same time. Then a
monitor of more sessions than the limit can poll each interval does the same, to show what watching costs a
client whose vendor throttles it. Last, a burst then steady (``_burst``): the same kind of monitor against a
server counting over a sliding second, second by second.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import anyio

from sigma_async import ChannelCreate, SigmaClient, SigmaError

from ._burst import BurstConfig, BurstRun, burst_section, measure_burst
from ._report import Section, status_for
from ._server import standalone_emulator

__all__ = ["ThrottleConfig", "run", "run_burst"]

#: Targets: against a server throttling at R, the adaptive client gets at least this share of R accepted...
MIN_ACCEPTED_SHARE = 0.80
#: ... with at most this share of its requests throttled.
MAX_THROTTLED = 0.10


@dataclass(frozen=True)
class ThrottleConfig:
    rate: float = 100.0
    callers: int = 64
    seconds: float = 10.0
    #: The monitor phase: sessions polled lean at ``monitor_interval``, about ``sessions / interval`` req/s.
    sessions: int = 200
    monitor_interval: float = 1.0
    burst: BurstConfig = field(default_factory=BurstConfig)


@dataclass(frozen=True)
class Outcome:
    seconds: float
    sent: int
    throttled: int
    calls_ok: int
    calls_failed: int
    final_rate: float | None

    @property
    def accepted_per_second(self) -> float:
        return (self.sent - self.throttled) / self.seconds

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.sent if self.sent else float("nan")


def run(config: ThrottleConfig) -> list[Section]:
    """The callers and the monitor against a token-bucket server, then the burst against a sliding second."""
    return [_run_steady(config), run_burst(config.burst)]


def run_burst(config: BurstConfig) -> Section:
    """Rounds of the burst scenario, ``adaptive=False`` and ``adaptive=True`` alternating on one server."""
    runs: dict[bool, list[BurstRun]] = {False: [], True: []}
    with _emulator(config.rate, window=1.0) as (url, creds):
        sessions = anyio.run(_live_sessions, url, creds, config.sessions)
        for i in range(config.rounds):
            for adaptive in (True, False) if i % 2 else (False, True):
                time.sleep(1.2)  # the server's sliding second empties: each run starts with the whole allowance
                runs[adaptive].append(anyio.run(measure_burst, config, url, creds, sessions, adaptive))
    return burst_section(config, runs)


async def _live_sessions(url: str, creds: dict[str, str], count: int) -> list[str]:
    async with SigmaClient(base_url=url, **creds) as client:
        specs = [ChannelCreate(name=f"burst-{i}", stop_timeout=3600) for i in range(count)]
        channels = [c for c in await client.channels.create_many(specs, concurrency=8) if not isinstance(c, Exception)]
        await client.channels.start_many([c.id for c in channels], concurrency=8)
        return await _gather_sessions(client, [c.id for c in channels])


def _run_steady(config: ThrottleConfig) -> Section:
    with _emulator(config.rate) as (url, creds):
        outcomes = {adaptive: anyio.run(_drive, config, url, creds, adaptive) for adaptive in (False, True)}
    with _emulator(config.rate) as (url, creds):
        watched = {adaptive: anyio.run(_watch, config, url, creds, adaptive) for adaptive in (False, True)}
    off, on = outcomes[False], outcomes[True]
    sec = Section(
        "throttle",
        f"Request budget: {config.callers} callers for {config.seconds:g} s against a server throttling at "
        f"{config.rate:g} req/s",
    )
    share = on.accepted_per_second / config.rate
    sec.add(
        "accepted req/s, adaptive", f"{on.accepted_per_second:.1f}", f"adaptive=False {off.accepted_per_second:.1f}",
        f"{share:.0%} of limit", f"≥ {MIN_ACCEPTED_SHARE:.0%} of limit", status_for(share, at_least=MIN_ACCEPTED_SHARE),
    )
    sec.add(
        "requests throttled (429), adaptive", f"{on.throttled_share:.1%}", f"adaptive=False {off.throttled_share:.1%}",
        "", f"≤ {MAX_THROTTLED:.0%}", status_for(on.throttled_share, below=MAX_THROTTLED + 1e-9),
    )
    sec.add("calls that failed (429 past retries)", f"{on.calls_failed}", f"adaptive=False {off.calls_failed}")
    sec.notes.append(
        f"Requests sent: adaptive {on.sent} ({on.throttled} throttled), adaptive=False {off.sent} ({off.throttled} "
        f"throttled). Rate allowed at the end, adaptive: {on.final_rate or 0:.1f} req/s. Default RetryPolicy."
    )
    sec.notes.append(
        f"Both runs open with {config.callers} calls at once, before any 429 was seen; the server lets "
        f"{max(1, config.rate / 10):g} through. Most of the adaptive client's 429s are that opening burst."
    )
    m_off, m_on = watched[False], watched[True]
    m_share = m_on.accepted_per_second / config.rate
    label = f"monitor of {config.sessions} sessions at {config.monitor_interval:g} s"
    sec.add(
        f"{label}: accepted req/s, adaptive", f"{m_on.accepted_per_second:.1f}",
        f"adaptive=False {m_off.accepted_per_second:.1f}", f"{m_share:.0%} of limit",
        f"≥ {MIN_ACCEPTED_SHARE:.0%} of limit", status_for(m_share, at_least=MIN_ACCEPTED_SHARE),
    )
    sec.add(
        f"{label}: requests throttled, adaptive", f"{m_on.throttled_share:.1%}",
        f"adaptive=False {m_off.throttled_share:.1%}", "", f"≤ {MAX_THROTTLED:.0%}",
        status_for(m_on.throttled_share, below=MAX_THROTTLED + 1e-9),
    )
    sec.add(
        f"{label}: sessions read in the window, adaptive", f"{m_on.calls_ok} of {config.sessions}",
        f"adaptive=False {m_off.calls_ok} of {config.sessions}",
    )
    sec.notes.append(
        f"The monitor phase asks about {config.sessions / config.monitor_interval:g} req/s of a server that "
        f"accepts {config.rate:g}: intervals stretch, and what matters is how much of the limit is used and how "
        "little of it is wasted on 429s. Sessions read = sessions whose first transition arrived in the window."
    )
    sec.data = {name: vars(o) | {"accepted_per_second": o.accepted_per_second, "throttled_share": o.throttled_share}
                for name, o in (("adaptive", on), ("fixed", off), ("monitor_adaptive", m_on),
                                ("monitor_fixed", m_off))}
    return sec


async def _watch(config: ThrottleConfig, url: str, creds: dict[str, str], adaptive: bool) -> Outcome:
    """A lean monitor of ``config.sessions`` sessions through one client for ``config.seconds``."""
    async with SigmaClient(base_url=url, adaptive=adaptive, **creds) as client:
        specs = [ChannelCreate(name=f"watch-{adaptive}-{i}", stop_timeout=3600) for i in range(config.sessions)]
        channels = [c for c in await client.channels.create_many(specs, concurrency=8) if not isinstance(c, Exception)]
        await client.channels.start_many([c.id for c in channels], concurrency=8)
        sessions = await _gather_sessions(client, [c.id for c in channels])
        await anyio.sleep(1.0)  # a full server bucket for the measured part
        before, start = client.stats, time.perf_counter()
        seen: set[str] = set()
        monitor = client.monitor(session_ids=sessions, interval=config.monitor_interval, stay_open=True)
        async with monitor:
            with anyio.move_on_after(config.seconds):
                async for transition in monitor:
                    seen.add(transition.session_id)
        wall, after = time.perf_counter() - start, client.stats
    return Outcome(
        seconds=wall, sent=after.sent - before.sent, throttled=after.throttled - before.throttled,
        calls_ok=len(seen), calls_failed=0, final_rate=after.rate,
    )


async def _gather_sessions(client: SigmaClient, channel_ids: list[str]) -> list[str]:
    out: list[str] = []
    for channel_id in channel_ids:
        for _ in range(20):  # a throttled read is retried by the client; a few more tries if it gives up
            try:
                session_id = (await client.channels.get(channel_id)).current_session_id
            except SigmaError:
                continue
            if session_id:
                out.append(session_id)
            break
    return out


async def _drive(config: ThrottleConfig, url: str, creds: dict[str, str], adaptive: bool) -> Outcome:
    ok = failed = 0
    async with SigmaClient(base_url=url, adaptive=adaptive, **creds) as client:
        channel = await client.channels.create(ChannelCreate(name=f"throttle-{adaptive}"))
        # Each run starts from a full server bucket and a fresh client.
        await anyio.sleep(1.0)
        before = client.stats
        deadline = time.perf_counter() + config.seconds

        async def caller() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                try:
                    await client.channels.get(channel.id)
                    ok += 1
                except SigmaError:
                    failed += 1

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(config.callers):
                tg.start_soon(caller)
        wall = time.perf_counter() - start
        after = client.stats
    return Outcome(
        seconds=wall, sent=after.sent - before.sent, throttled=after.throttled - before.throttled,
        calls_ok=ok, calls_failed=failed, final_rate=after.rate,
    )


def _emulator(rate: float, window: float | None = None) -> AbstractContextManager[tuple[str, dict[str, str]]]:
    """The standalone emulator in its own process; yields its URL and credentials from its ready line."""
    extra = ["--throttle-window", str(window)] if window is not None else []
    return standalone_emulator(["-m", "sigma_async.testing", "--throttle", str(rate), *extra])
