"""A burst, then steady: a lean monitor asking more than a sliding-window server allows, second by second.

The server (the standalone emulator, ``--throttle R --throttle-window 1``) lets R requests through in any one
second. A lean monitor of more sessions than that starts: its first second is a burst that fills the server's
window, and the server refuses everything until that burst has aged out. What a user notices is how soon the
client settles near R and how many of its requests are wasted on 429s meanwhile, so every answer is timed and
counted per one-second window. Rounds alternate ``adaptive=False`` (retries and backoff only) and
``adaptive=True``, each on a fresh client after the server's window has emptied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from sigma_async import SigmaClient

from ._report import Section, status_for
from ._stats import median

__all__ = ["BurstConfig", "BurstRun", "measure_burst", "burst_section"]

#: Targets: from ``settle`` seconds on, the adaptive client gets at least this share of R accepted...
MIN_SETTLED_SHARE = 0.90
#: ... with at most this share of its requests answered 429.
MAX_THROTTLED = 0.10


@dataclass(frozen=True)
class BurstConfig:
    rate: float = 100.0
    #: About ``sessions / interval`` requests a second asked: 2.4 times the rate by default.
    sessions: int = 240
    interval: float = 1.0
    seconds: float = 8.0
    #: The burst and the settling after it; the settled window is from here to the end.
    settle: float = 2.0
    rounds: int = 3


@dataclass(frozen=True)
class BurstRun:
    """One run: good (2xx) answers and 429s in each one-second window from the monitor's start."""

    good: list[int]
    throttled: list[int]
    settle: float

    @property
    def settled_good_per_second(self) -> float:
        good = self.good[int(self.settle):]
        return sum(good) / len(good) if good else float("nan")

    @property
    def settled_throttled_share(self) -> float:
        good, bad = sum(self.good[int(self.settle):]), sum(self.throttled[int(self.settle):])
        return bad / (good + bad) if good + bad else float("nan")

    @property
    def throttled_share(self) -> float:
        good, bad = sum(self.good), sum(self.throttled)
        return bad / (good + bad) if good + bad else float("nan")

    def settled_after(self, rate: float) -> float:
        """The start of the first one-second window from which every window had 90 % of ``rate`` (nan: never)."""
        for start in range(len(self.good)):
            if all(g >= MIN_SETTLED_SHARE * rate for g in self.good[start:]):
                return float(start)
        return float("nan")


async def measure_burst(
    config: BurstConfig, url: str, creds: dict[str, str], sessions: list[str], adaptive: bool
) -> BurstRun:
    """One monitor of ``sessions`` through a fresh client, every answer counted in its one-second window."""
    windows = max(1, round(config.seconds))
    good, throttled = [0] * windows, [0] * windows
    async with SigmaClient(base_url=url, adaptive=adaptive, **creds) as client:
        start = time.perf_counter()

        def on_response(route: str, status: int) -> None:
            at = int(time.perf_counter() - start)
            if at < windows:
                if status == 429:
                    throttled[at] += 1
                elif 200 <= status < 300:
                    good[at] += 1

        client.on_response = on_response
        monitor = client.monitor(session_ids=sessions, interval=config.interval, stay_open=True)
        async with monitor:
            with anyio.move_on_after(config.seconds):
                async for _transition in monitor:
                    pass
    return BurstRun(good=good, throttled=throttled, settle=config.settle)


def burst_section(config: BurstConfig, runs: dict[bool, list[BurstRun]]) -> Section:
    """Medians over rounds, per window and settled, for both clients."""
    sec = Section(
        "throttle-burst",
        f"A burst, then steady: a lean monitor of {config.sessions} sessions at {config.interval:g} s against a "
        f"server allowing {config.rate:g} requests in any one second",
    )
    on, off = runs[True], runs[False]

    def med(values: list[float]) -> float:
        return median([v for v in values if v == v]) if values else float("nan")

    def per_window(rs: list[BurstRun], attr: str) -> str:
        return " ".join(f"{median([getattr(r, attr)[i] for r in rs]):.0f}" for i in range(len(rs[0].good)))

    def share_per_window(rs: list[BurstRun]) -> str:
        shares = []
        for i in range(len(rs[0].good)):
            per = [r.throttled[i] / (r.good[i] + r.throttled[i]) for r in rs if r.good[i] + r.throttled[i]]
            shares.append(f"{median(per):.0%}" if per else "-")
        return " ".join(shares)

    settled = med([r.settled_good_per_second for r in on])
    share = settled / config.rate
    window = f"{config.settle:g}-{config.seconds:g} s"
    sec.add(
        f"good req/s, {window}, adaptive", f"{settled:.1f}",
        f"adaptive=False {med([r.settled_good_per_second for r in off]):.1f}", f"{share:.0%} of limit",
        f"≥ {MIN_SETTLED_SHARE:.0%} of limit", status_for(share, at_least=MIN_SETTLED_SHARE),
    )
    settled_share = med([r.settled_throttled_share for r in on])
    sec.add(
        f"requests answered 429, {window}, adaptive", f"{settled_share:.1%}",
        f"adaptive=False {med([r.settled_throttled_share for r in off]):.1%}", "",
        f"≤ {MAX_THROTTLED:.0%}", status_for(settled_share, below=MAX_THROTTLED + 1e-9),
    )
    sec.add(
        "requests answered 429, whole run with the burst, adaptive", f"{med([r.throttled_share for r in on]):.1%}",
        f"adaptive=False {med([r.throttled_share for r in off]):.1%}",
    )
    sec.add(
        f"settled (every later second ≥ {MIN_SETTLED_SHARE:.0%} of limit) after, adaptive",
        f"{med([r.settled_after(config.rate) for r in on]):g} s",
        f"adaptive=False {med([r.settled_after(config.rate) for r in off]):g} s",
    )
    sec.add("good req/s in each second, adaptive", per_window(on, "good"), f"adaptive=False {per_window(off, 'good')}")
    sec.add("429 share in each second, adaptive", share_per_window(on), f"adaptive=False {share_per_window(off)}")
    rounds = f"{len(on)} round{'s' if len(on) != 1 else ''}"
    sec.notes.append(
        f"Medians of {rounds} per client, interleaved, each on a fresh client after the server's window "
        f"emptied. About {config.sessions / config.interval:g} req/s asked of a server allowing {config.rate:g}: "
        "the first second is the burst (the monitor spreads its first polls over one interval). Good = 2xx "
        "answers, counted in the second they arrived; retries count as requests. Default RetryPolicy."
    )
    sec.data = {
        "adaptive": [vars(r) for r in on],
        "fixed": [vars(r) for r in off],
        "settled_good_per_second": settled,
        "settled_throttled_share": settled_share,
    }
    return sec
