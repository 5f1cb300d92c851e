"""Walking every page of a listing, lazily, without trusting the server to end it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeVar

from .models import Page

__all__ = ["ITER_PAGE_SIZE", "STALE_PAGE_LIMIT", "walk_pages"]

logger = logging.getLogger("sigma_async")
Item = TypeVar("Item")

#: Items per page when ``iter`` is not told otherwise.
ITER_PAGE_SIZE: Final = 100
#: Pages in a row with nothing new after which a listing is taken to repeat itself.
STALE_PAGE_LIMIT: Final = 3


async def walk_pages(
    fetch: Callable[[int], Awaitable[Page[Item]]], per_page: int, key: Callable[[Item], str]
) -> AsyncIterator[Item]:
    """Walk pages until one is short or empty, yielding each item once.

    Items are deduplicated by id, since pages shift while new items arrive. A page that brings nothing new
    is a shifted page (go on) or a server repeating itself: after ``STALE_PAGE_LIMIT`` of them in a row the
    walk ends, so no server can make it loop. Items without an id count as new unless their whole page is the
    previous one again.
    """
    seen: set[str] = set()
    previous: list[Item] | None = None
    stale = 0
    page_number = 1
    while True:
        page = await fetch(page_number)
        repeated = page.data == previous
        fresh = 0
        for item in page.data:
            item_id = key(item)
            if item_id:
                if item_id in seen:
                    continue
                seen.add(item_id)
            elif repeated:
                continue
            fresh += 1
            yield item
        # ``total`` is not trusted to stop: a short or empty page is the only sure last page. A server that caps
        # ``perPage`` says so in the page's own ``perPage``: its pages end there, not where we asked.
        served = page.per_page if page.per_page is not None and 0 < page.per_page < per_page else per_page
        if len(page.data) < served:
            return
        stale = stale + 1 if fresh == 0 else 0
        if stale >= STALE_PAGE_LIMIT:
            logger.warning("pages %d to %d brought nothing new; stopping the listing there", page_number - stale + 1,
                           page_number)
            return
        previous = page.data
        page_number += 1
