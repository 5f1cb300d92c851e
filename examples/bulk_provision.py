"""Provision channels by the hundred from a file of names, with bounded concurrency and a report of failures.

    SIGMA_USERNAME=... SIGMA_SECRET_KEY=... SIGMA_APP_ID=... python examples/bulk_provision.py names.txt
"""

from __future__ import annotations

import asyncio
import sys

from sigma_async import Channel, ChannelCreate, SigmaClient, SigmaError


async def provision_many(
    client: SigmaClient, names: list[str], *, concurrency: int = 16
) -> tuple[list[Channel], list[tuple[str, SigmaError]]]:
    """Create one channel per name; returns the channels made and the (name, error) of each that failed."""
    specs = [ChannelCreate(name=name, tags=["bulk"]) for name in names]  # ValueError here, before any call

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

    results = await client.channels.create_many(specs, concurrency=concurrency, on_progress=progress)
    print(file=sys.stderr)
    created = [r for r in results if isinstance(r, Channel)]
    failed = [(name, r) for name, r in zip(names, results, strict=True) if isinstance(r, SigmaError)]
    return created, failed


async def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: bulk_provision.py FILE_OF_NAMES", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:  # noqa: ASYNC230 - read once at start-up, before any call
        names = [line.strip() for line in f if line.strip()]
    async with SigmaClient.from_env() as client:
        created, failed = await provision_many(client, names)
    for channel in created:
        print(channel.id, channel.name)
    for name, error in failed:
        print(f"FAILED {name}: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
