"""Items in the order they were last written, for listings without ``q``: a page costs O(log n + page).

A server answers the app-wide listings (every event, every session, newest first) from an index; an emulator
that sorted every item on each request would cost seconds per page at a hundred thousand sessions, and would
let pages shift while a client reads them, which no database does at that rate.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from datetime import datetime
from typing import Generic, TypeVar

__all__ = ["RecencyIndex"]

T = TypeVar("T")
_Key = tuple[datetime, str]

#: Keys per block: the last block fills to this, a block split in two past twice this, merged below a quarter.
_LOAD = 512


class RecencyIndex(Generic[T]):
    """Items keyed by id, kept in ``(written, id)`` order: the order of ``sort=updatedAt`` with ties by id.

    Keys live in sorted blocks of a few hundred, with a Fenwick tree over the blocks' lengths to find where a
    page starts. Writes usually come in time order, so a new item or one written again lands at the end of the
    last block in O(1); one written out of order costs O(log n + block). Putting an id again moves its item.
    """

    def __init__(self) -> None:
        self._blocks: list[list[_Key]] = []
        self._maxes: list[_Key] = []  # the last key of each block, to find a key's block by bisection
        self._keys: dict[str, _Key] = {}
        self._items: dict[str, T] = {}
        # 1-based Fenwick tree over len(block); None after the blocks were split or merged: rebuilt when read.
        self._tree: list[int] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, ident: object) -> bool:
        return ident in self._keys

    def put(self, ident: str, written: datetime, item: T) -> None:
        """Index ``item`` under ``ident`` as written at ``written``, moving it if it was indexed already."""
        key = (written, ident)
        self._items[ident] = item
        old = self._keys.get(ident)
        if old == key:
            return
        if old is not None:
            self._remove(old)
        self._keys[ident] = key
        self._insert(key)

    def page(self, page: int, per_page: int, *, newest_first: bool = True) -> list[T]:
        """Page ``page`` (from 1) of ``per_page`` items, newest first or oldest first."""
        total = len(self._keys)
        skip = (page - 1) * per_page
        if skip >= total or per_page < 1:
            return []
        count = min(per_page, total - skip)
        items = self._items
        blocks = self._blocks
        out: list[T] = []
        if newest_first:
            b, i = self._locate(total - 1 - skip)
            while len(out) < count:
                block = blocks[b]
                low = max(0, i + 1 - (count - len(out)))
                out.extend(items[key[1]] for key in reversed(block[low : i + 1]))
                b -= 1
                i = len(blocks[b]) - 1 if b >= 0 else -1
        else:
            b, i = self._locate(skip)
            while len(out) < count:
                block = blocks[b]
                high = min(len(block), i + count - len(out))
                out.extend(items[key[1]] for key in block[i:high])
                b, i = b + 1, 0
        return out

    # -- blocks ---------------------------------------------------------------------------------------------

    def _insert(self, key: _Key) -> None:
        blocks, maxes = self._blocks, self._maxes
        if not blocks or key > maxes[-1]:
            if not blocks or len(blocks[-1]) >= _LOAD:
                blocks.append([key])
                maxes.append(key)
                self._tree_append(1)
                return
            b = len(blocks) - 1
            blocks[b].append(key)
            maxes[b] = key
        else:
            b = bisect_left(maxes, key)
            block = blocks[b]
            insort(block, key)  # below this block's last key, which stays its max
            if len(block) > 2 * _LOAD:
                half = len(block) // 2
                blocks[b : b + 1] = [block[:half], block[half:]]
                maxes[b : b + 1] = [block[half - 1], block[-1]]
                self._tree = None
                return
        self._tree_add(b, 1)

    def _remove(self, key: _Key) -> None:
        blocks, maxes = self._blocks, self._maxes
        b = bisect_left(maxes, key)
        block = blocks[b]
        i = bisect_left(block, key)
        del block[i]
        if not block:
            del blocks[b], maxes[b]
            self._tree = None
            return
        if i == len(block):
            maxes[b] = block[-1]
        if len(block) < _LOAD // 4 and len(blocks) > 1:
            # Items written again leave the older blocks thin: merge with a neighbour, so blocks stay few.
            a = b - 1 if b > 0 else b
            merged = blocks[a] + blocks[a + 1]
            if len(merged) > 2 * _LOAD:
                half = len(merged) // 2
                blocks[a : a + 2] = [merged[:half], merged[half:]]
                maxes[a : a + 2] = [merged[half - 1], merged[-1]]
            else:
                blocks[a : a + 2] = [merged]
                maxes[a : a + 2] = [merged[-1]]
            self._tree = None
            return
        self._tree_add(b, -1)

    # -- the Fenwick tree over block lengths ----------------------------------------------------------------

    def _fenwick(self) -> list[int]:
        tree = self._tree
        if tree is None:
            size = len(self._blocks)
            tree = [0] * (size + 1)
            for i, block in enumerate(self._blocks, 1):
                tree[i] += len(block)
                parent = i + (i & -i)
                if parent <= size:
                    tree[parent] += tree[i]
            self._tree = tree
        return tree

    def _tree_add(self, block: int, delta: int) -> None:
        tree = self._tree
        if tree is None:
            return
        i = block + 1
        while i < len(tree):
            tree[i] += delta
            i += i & -i

    def _tree_append(self, length: int) -> None:
        tree = self._tree
        if tree is None:
            return
        i = len(tree)  # the new block's 1-based index: it covers blocks (i - lowbit(i), i]
        tree.append(length + self._prefix(i - 1) - self._prefix(i - (i & -i)))

    def _prefix(self, blocks: int) -> int:
        tree = self._fenwick()
        total = 0
        while blocks > 0:
            total += tree[blocks]
            blocks -= blocks & -blocks
        return total

    def _locate(self, position: int) -> tuple[int, int]:
        """The block holding the key at ``position`` (from 0, oldest first) and its place in that block."""
        tree = self._fenwick()
        size = len(tree) - 1
        b, rest = 0, position
        step = 1 << size.bit_length()
        while step:
            nxt = b + step
            if nxt <= size and tree[nxt] <= rest:
                b = nxt
                rest -= tree[nxt]
            step >>= 1
        return b, rest
