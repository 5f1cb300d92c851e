"""Cursor stores kept in this process's memory or in one local JSON file.

The JetStream key-value store lives in ``_nats.py`` (it needs the ``nats`` extra).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import anyio
import msgspec

from .._files import replace_atomically

__all__ = ["FileCursorStore", "MemoryCursorStore"]

_cursor_map = msgspec.json.Decoder(dict[str, str])


class MemoryCursorStore:
    """Cursors in a dict: nothing survives the process. For tests, and runs that may start over."""

    def __init__(self, cursors: dict[str, str] | None = None) -> None:
        self.cursors: dict[str, str] = dict(cursors or {})

    async def load(self, key: str) -> str | None:
        return self.cursors.get(key)

    async def load_all(self) -> dict[str, str]:
        return dict(self.cursors)

    async def save(self, key: str, cursor: str) -> None:
        self.cursors[key] = cursor

    async def drop(self, key: str) -> None:
        self.cursors.pop(key, None)

    async def aclose(self) -> None:
        pass


class FileCursorStore:
    """Every session's cursor in one JSON object (``{"<session id>": "<cursor>", ...}``) at ``path``.

    A done session holds ``"done"`` in place of its cursor (see ``DONE``), and a dropped one nothing, so the file's
    size follows the sessions being watched, not every session ever seen.

    Each save writes the whole map to a temporary file beside it, fsyncs it, renames it over the old one and
    fsyncs the directory: a ``kill -9`` (or a power cut) at any moment leaves the old map or the new one, never a
    torn file. Each save returns once a write holding it is on disk; saves that arrive while a write is in flight,
    or less than ``min_interval`` seconds after the last one began, are committed together by the next write. So
    the file is rewritten at most ``1 / min_interval`` times a second however many sessions deliver, and a write's
    cost (which grows with the number of sessions) is shared. The file is read once, when the store is made.
    One relay per file:
    two processes writing it would overwrite each other's cursors (use a ``nats://`` store for replicas).
    """

    def __init__(self, path: str | os.PathLike[str], *, min_interval: float = 0.1) -> None:
        self.path = Path(path)
        self.min_interval = min_interval
        self._cursors = _read(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A save cut short by a kill leaves its temporary file; the map it held is older than the one read above.
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        self._lock = anyio.Lock()
        self._changes = 0  # saves made so far
        self._written = 0  # saves covered by the file on disk
        self._last_write = -math.inf  # time.monotonic() when the last write began

    async def load(self, key: str) -> str | None:
        return self._cursors.get(key)

    async def load_all(self) -> dict[str, str]:
        return dict(self._cursors)

    async def save(self, key: str, cursor: str) -> None:
        self._cursors[key] = cursor
        await self._commit()

    async def drop(self, key: str) -> None:
        """Forget ``key`` (durably, like ``save``): the file keeps the live sessions, not every one ever seen."""
        if self._cursors.pop(key, None) is not None:
            await self._commit()

    async def _commit(self) -> None:
        self._changes += 1
        mine = self._changes
        async with self._lock:
            if self._written >= mine:
                return  # the write that just finished included this save
            # Saves arriving meanwhile join this write. The relay delivers the next records while it waits.
            wait = self._last_write + self.min_interval - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)
            self._last_write = time.monotonic()
            covered = self._changes
            data = msgspec.json.encode(self._cursors)
            # In a thread: an fsync can take milliseconds, which would stall every watch on this loop.
            await anyio.to_thread.run_sync(replace_atomically, self.path, data)
            self._written = covered

    async def aclose(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"FileCursorStore({str(self.path)!r})"


def _read(path: Path) -> dict[str, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not data.strip():
        return {}
    try:
        return _cursor_map.decode(data)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{path}: not a cursor file (a JSON object of session id to cursor): {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a cursor file (invalid JSON): {exc}") from exc


