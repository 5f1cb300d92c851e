"""A stateful fake Sigma Livestream API for tests and local runs: real HTTP on loopback, controllable time.

>>> from sigma_async.testing import Emulator, Fault
>>> async with Emulator(manual_clock=True) as emu:
...     emu.faults.add("POST /channels", Fault(status=503, retry_after=0.1))   # the next create is refused once
...     async with emu.client() as client:
...         ch = await client.channels.create(ChannelCreate(name="news"))      # ... and retried
...     assert emu.journal.count("POST /channels") == 2

Also a pytest plugin (fixtures ``sigma_emulator`` and ``sigma_client``), a standalone server
(``python -m sigma_async.testing --port 8080`` prints its URL and credentials and serves until interrupted), and
real binaries on loopback: ``NatsServer`` (JetStream) and ``HlsLadder`` (ffmpeg packaging a live HLS ladder).
"""

from ._app import BASE_PATH
from ._clock import Clock
from ._emulator import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME, Emulator
from ._faults import ROUTES, Fault, FaultPlan, FaultRule, Journal, JournalEntry
from ._ffmpeg import HlsLadder, find_ffmpeg
from ._nats import NatsServer, find_nats_server
from ._standalone import build_parser, main, serve
from ._state import ChannelState, EmulatorError, EmulatorState, SessionState

__all__ = [
    "BASE_PATH",
    "DEFAULT_APP_ID",
    "DEFAULT_SECRET_KEY",
    "DEFAULT_USERNAME",
    "ROUTES",
    "ChannelState",
    "Clock",
    "Emulator",
    "EmulatorError",
    "EmulatorState",
    "Fault",
    "FaultPlan",
    "FaultRule",
    "HlsLadder",
    "Journal",
    "JournalEntry",
    "NatsServer",
    "SessionState",
    "build_parser",
    "find_ffmpeg",
    "find_nats_server",
    "main",
    "serve",
]
