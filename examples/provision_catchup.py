"""Provision a channel that records catchup to S3, start it, wait for the encoder, and print the playlists.

    SIGMA_USERNAME=... SIGMA_SECRET_KEY=... SIGMA_APP_ID=... S3_ACCESS_KEY=... S3_SECRET_KEY=... \\
        python examples/provision_catchup.py news-hd my-bucket https://s3.example.com hn [--stop-after 60]

It waits for an encoder to push to the printed RTMP URL, then follows the session until it ends: the encoder
stops and ``stopTimeout`` passes, or, with ``--stop-after``, it stops the channel itself that long after going
on air. Against an emulator (``sigma-async emulator --auto-publish 2``) the S3 keys may be left out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from sigma_async import ChannelCreate, S3Destination, SigmaClient, Transition, catchup_playlist_url

#: Transitions that mean the session is on air: ``live`` once per session, ``stable`` with each healthy signal.
ON_AIR = frozenset({"live", "stable"})


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


async def follow(
    client: SigmaClient, p: Provisioned, *, interval: float = 2.0, stop_after: float | None = None
) -> list[Transition]:
    """Print each transition until the session ends; with ``stop_after``, stop the channel that many seconds
    after it first goes on air. Returns the transitions from on air to the end."""
    seen: list[Transition] = []
    stopper: asyncio.Task[None] | None = None
    try:
        async for t in client.watch_session(p.session_id, interval=interval):
            if t.kind in ON_AIR and not seen:
                print(f"{t.at:%H:%M:%S} on air")
                if stop_after is not None:
                    stopper = asyncio.create_task(_stop_later(client, p.channel_id, stop_after))
            if seen or t.kind in ON_AIR:
                print(f"{t.at:%H:%M:%S} {t.kind}")
                seen.append(t)
    finally:
        if stopper is not None:
            if not stopper.done():
                stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
    return seen


async def _stop_later(client: SigmaClient, channel_id: str, delay: float) -> None:
    await asyncio.sleep(delay)
    await client.channels.stop(channel_id)


def s3_destination(bucket: str, endpoint: str, region: str, base_url: str) -> S3Destination:
    """The bucket's keys from ``S3_ACCESS_KEY`` and ``S3_SECRET_KEY``; placeholders only against an emulator."""
    access_key, secret_key = os.environ.get("S3_ACCESS_KEY"), os.environ.get("S3_SECRET_KEY")
    if not (access_key and secret_key):
        if urlsplit(base_url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("set S3_ACCESS_KEY and S3_SECRET_KEY: the keys Sigma uses to write catchup to the bucket")
        print("S3_ACCESS_KEY/S3_SECRET_KEY not set: using placeholders, which only an emulator accepts",
              file=sys.stderr)  # fmt: skip
        access_key, secret_key = access_key or "emulator-access-key", secret_key or "emulator-secret-key"
    return S3Destination(
        access_key=access_key, secret_key=secret_key, bucket=bucket, endpoint=endpoint, region=region
    )


async def main(argv: list[str], *, interval: float = 2.0) -> int:
    parser = argparse.ArgumentParser(description="Provision a channel with catchup to S3 and follow a session.")
    parser.add_argument("name")
    parser.add_argument("bucket")
    parser.add_argument("endpoint", metavar="S3_ENDPOINT")
    parser.add_argument("region")
    parser.add_argument("--stop-after", type=float, metavar="SECONDS",
                        help="stop the channel this long after it goes on air (default: wait for the encoder)")
    args = parser.parse_args(argv)
    async with SigmaClient.from_env() as client:
        s3 = s3_destination(args.bucket, args.endpoint, args.region, client.base_url)
        p = await provision(client, args.name, s3)
        print(f"channel {p.channel_id}: push RTMP to {p.publish_url}\nwatch live at {p.live_url}")
        await follow(client, p, interval=interval, stop_after=args.stop_after)
        print("catchup:", catchup_playlist_url(f"{args.endpoint.rstrip('/')}/{args.bucket}", p.session_id))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
