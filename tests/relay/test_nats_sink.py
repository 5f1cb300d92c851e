"""The JetStream sink: the stream it makes, the subjects it uses, and a repeat dropped by its message id."""

from __future__ import annotations

from datetime import datetime, timezone

import nats

from sigma_async.relay import NatsSink, encode_record
from sigma_async.testing import NatsServer
from sigma_async.transitions import Live, Stable


async def test_the_stream_is_made_and_a_repeat_is_stored_once() -> None:
    at = datetime(2024, 7, 22, 11, 33, 50, tzinfo=timezone.utc)
    live = Live(session_id="s-1", channel_id="c-1", source="status", at=at, cursor="k1", id="s-1/status/live")
    stable = Stable(session_id="s.2", source="event", at=at, cursor="k2", id="s.2/event/e-9", previous="live")
    async with NatsServer() as server:
        sink = await NatsSink.open(f"{server.url}/SIGMA")
        again = await NatsSink.open(f"{server.url}/SIGMA")  # a second relay finds the stream there
        try:
            for transition in (live, stable, live):  # the third is a repeat, as after a crash
                outcome = await sink.deliver(encode_record(transition), transition)
                assert outcome.accepted
            await again.deliver(encode_record(stable), stable)
        finally:
            await sink.aclose()
            await again.aclose()

        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("SIGMA")
            assert info.config.subjects == ["sigma.>"]
            assert info.state.messages == 2
            first, second = await js.get_msg("SIGMA", 1), await js.get_msg("SIGMA", 2)
        finally:
            await nc.close()
    assert first.subject == "sigma.s-1.live" and first.data == encode_record(live)
    assert first.headers is not None and first.headers["Nats-Msg-Id"] == "s-1/status/live"
    assert second.subject == "sigma.s_2.stable", "a dot in an id would split the subject's tokens"
