"""What apply remembers between runs: each name's channel id and spec digest, in a file rewritten atomically.

The file is JSON, small and readable::

    {"version": 1, "salt": "9f2c...", "channels": {
      "stage-1": {"id": "6630c2...", "spec": "sha256:..."},
      "stage-2": {"spec": "sha256:...", "pending": "2024-07-22T11:33:50Z"}}}

``pending`` marks a create about to be sent: written (and on disk) before the request leaves, replaced by the id
once the answer is in. Found by a later run, it means the create may or may not have happened: in doubt.
It never holds a secret: ``spec`` is a digest in which every secret went through a salted scrypt (``_digest``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

from .._files import replace_atomically

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, as documented
    fcntl = None  # type: ignore[assignment]

__all__ = ["ApplyState", "Entry", "StateError", "StateFile", "default_state_path"]

VERSION = 1


class StateError(Exception):
    """The state file cannot be used: unreadable, not a state file, or held by another apply."""


class Entry(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One name: its channel ``id`` (None while a create is pending), the ``spec`` digest it was created from,
    and ``pending``, the time a create was sent whose answer has not been recorded."""

    id: str | None = None
    spec: str
    pending: str | None = None


class ApplyState(msgspec.Struct, forbid_unknown_fields=True):
    """The whole state: ``channels`` by name, and the ``salt`` of this state's secret fingerprints."""

    version: int = VERSION
    salt: str = ""
    channels: dict[str, Entry] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.salt:
            self.salt = secrets.token_hex(16)

    def in_doubt(self) -> list[str]:
        """Names whose create was sent (or about to be) with no answer recorded."""
        return [name for name, entry in self.channels.items() if entry.pending is not None]

    # Every change below is followed by ``StateFile.commit`` before anything depends on it.

    def mark_pending(self, name: str, spec: str) -> None:
        self.channels[name] = Entry(spec=spec, pending=_now())

    def mark_created(self, name: str, channel_id: str, spec: str) -> None:
        self.channels[name] = Entry(spec=spec, id=channel_id)

    def drop(self, name: str) -> None:
        self.channels.pop(name, None)


def default_state_path(channels_file: str | os.PathLike[str]) -> Path:
    """``channels.toml`` -> ``channels.state.json``, beside it."""
    path = Path(channels_file)
    return path.with_name(path.stem + ".state.json")


_decoder = msgspec.json.Decoder(ApplyState)


class StateFile:
    """The state at ``path``: read once, then rewritten whole after each change (temp file, fsync, rename).

    ``commit()`` returns once a write that includes every change made before the call is on disk. Commits that
    arrive while a write is in flight share the next one, so many items in flight cost a few writes, not one
    each. ``lock()`` holds an advisory lock on ``PATH.lock`` so that two applies cannot share one state.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.state = self._read()
        self._changes = 0
        self._written = 0
        self._lock = anyio.Lock()

    def _read(self) -> ApplyState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ApplyState()
        except OSError as exc:
            raise StateError(f"cannot read the state file {self.path}: {exc.strerror or exc}") from None
        try:
            state = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise StateError(f"{self.path} is not an apply state file: {exc}") from None
        if state.version != VERSION:
            raise StateError(f"{self.path}: state version {state.version} is not known to this sigma-async")
        try:
            bytes.fromhex(state.salt)
        except ValueError:
            raise StateError(f"{self.path}: the salt is not hexadecimal") from None
        return state

    async def commit(self) -> None:
        """Write the state now unless a write already covers every change made so far."""
        self._changes += 1
        mine = self._changes
        async with self._lock:
            if self._written >= mine:
                return
            covered = self._changes
            data = msgspec.json.format(msgspec.json.encode(self.state), indent=1)
            # In a thread: an fsync takes milliseconds, during which the other items' requests go on.
            await anyio.to_thread.run_sync(replace_atomically, self.path, data)
            self._written = covered

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``PATH.lock`` for the duration; ``StateError`` at once if another apply holds it."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            handle = open(lock_path, "a+b")  # noqa: SIM115 - held open for the whole block
        except OSError as exc:
            raise StateError(f"cannot open {lock_path}: {exc.strerror or exc}") from None
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(f"another apply is running with the state file {self.path}") from None
            # A write cut short by a kill leaves its temporary file; the state it held never took effect.
            for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


