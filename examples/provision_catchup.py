"""Provision a channel that records catchup to S3, start it, wait for the encoder, and print the playlists.

    SIGMA_USERNAME=... SIGMA_SECRET_KEY=... SIGMA_APP_ID=... S3_ACCESS_KEY=... S3_SECRET_KEY=... \\
        python examples/provision_catchup.py news-hd my-bucket https://s3.example.com hn
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from sigma_async import ChannelCreate, S3Destination, SigmaClient, Transition, catchup_playlist_url


@dataclass
class Provisioned:
    channel_id: str
    session_id: str
    publish_url: str | None
    live_url: str | None


async def provision(client: SigmaClient, name: str, s3: S3Destination) -> Provisioned:
    """Create the channel with catchup to ``s3``, start it, and return where to publish and watch."""
    channel = await client.channels.create(ChannelCreate(name=name, destination_catchup=s3))
    await client.channels.start(channel.id)
    channel = await client.channels.get(channel.id)  # start answers nothing; the session id is on the channel
    assert channel.current_session_id is not None
    return Provisioned(channel.id, channel.current_session_id, channel.input.publish_url, channel.live_stream_url)


async def wait_until_live_then_ended(
    client: SigmaClient, session_id: str, *, interval: float = 2.0
) -> list[Transition]:
    """Block until the encoder is live, then until the session ends (stop, or no signal for stopTimeout)."""
    live = await client.wait_for(session_id, "stable", timeout=600, interval=interval)
    print(f"{live.at:%H:%M:%S} {live.kind}: on air")
    seen = [live]
    # Resume after the transition wait_for returned: nothing before it is printed twice.
    async for t in client.watch_session(session_id, interval=interval, since=live.cursor):
        print(f"{t.at:%H:%M:%S} {t.kind}")
        seen.append(t)
    return seen


async def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: provision_catchup.py NAME BUCKET S3_ENDPOINT REGION", file=sys.stderr)
        return 2
    name, bucket, endpoint, region = argv
    s3 = S3Destination(
        access_key=os.environ["S3_ACCESS_KEY"], secret_key=os.environ["S3_SECRET_KEY"],
        bucket=bucket, endpoint=endpoint, region=region,
    )
    async with SigmaClient.from_env() as client:
        p = await provision(client, name, s3)
        print(f"channel {p.channel_id}: push RTMP to {p.publish_url}\nwatch live at {p.live_url}")
        await wait_until_live_then_ended(client, p.session_id)
        print("catchup:", catchup_playlist_url(f"{endpoint.rstrip('/')}/{bucket}", p.session_id))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
