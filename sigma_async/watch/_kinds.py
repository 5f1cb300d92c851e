"""Which transition kind a session status or an event action means: ``KindTable``, data rather than code."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..transitions import PLAYBACK_TYPES, TRANSITION_TYPES

__all__ = ["DEFAULT_TABLE", "KIND_BY_ACTION", "KIND_BY_STATUS", "KINDS", "TABLE_KINDS", "KindTable", "normalise"]

#: The kinds a status or an event action can mean, ``unknown`` included.
TABLE_KINDS: frozenset[str] = frozenset(TRANSITION_TYPES) | {"unknown"}
#: Every transition kind: those, and playback health's.
KINDS: frozenset[str] = TABLE_KINDS | frozenset(PLAYBACK_TYPES)

#: Normalised session status -> transition kind.
KIND_BY_STATUS: Mapping[str, str] = MappingProxyType({
    "initializing": "initializing", "initialize": "initializing",
    "started": "started", "start": "started", "starting": "started",
    "live": "live",
    "stable": "stable",
    "interrupted": "interrupted", "signal_interrupted": "interrupted",
    "restored": "restored",
    "stopped": "stopped", "stop": "stopped", "stopping": "stopped",
    "ended": "ended", "end": "ended", "finished": "ended",
})  # fmt: skip

#: Normalised event action -> transition kind.
KIND_BY_ACTION: Mapping[str, str] = MappingProxyType({
    "initialize": "initializing", "initializing": "initializing",
    "start": "started", "started": "started",
    "live": "live", "on_publish": "live",
    "stable": "stable",
    "signal_interrupted": "interrupted", "interrupted": "interrupted", "signal_lost": "interrupted",
    "signal_restored": "restored", "restored": "restored",
    "stop": "stopped", "stopped": "stopped",
    "ended": "ended", "end": "ended",
})  # fmt: skip


def normalise(raw: str) -> str:
    return raw.strip().lower().replace(" ", "_").replace("-", "_")


def _checked(table: Mapping[str, str]) -> dict[str, str]:
    bad = {key: kind for key, kind in table.items() if kind not in TABLE_KINDS}
    if bad:
        raise ValueError(f"not transition kinds: {bad!r}; kinds are {sorted(TABLE_KINDS)}")
    return {normalise(key): kind for key, kind in table.items()}


class KindTable:
    """Which transition kind a status or an event action means; anything it does not map is ``unknown``.

    Keys are normalised (case, spaces and hyphens do not matter). Extend it for values the vendor adds:

    >>> table = DEFAULT_TABLE.extended(actions={"transcoder_restarted": "restored"})
    >>> table.kind_for_action("Transcoder-Restarted")
    'restored'
    """

    def __init__(self, statuses: Mapping[str, str], actions: Mapping[str, str]) -> None:
        self._statuses = _checked(statuses)
        self._actions = _checked(actions)

    @property
    def statuses(self) -> Mapping[str, str]:
        return MappingProxyType(self._statuses)

    @property
    def actions(self) -> Mapping[str, str]:
        return MappingProxyType(self._actions)

    def kind_for_status(self, raw: str) -> str:
        return self._statuses.get(normalise(raw), "unknown")

    def kind_for_action(self, raw: str) -> str:
        return self._actions.get(normalise(raw), "unknown")

    def extended(
        self, *, statuses: Mapping[str, str] | None = None, actions: Mapping[str, str] | None = None
    ) -> KindTable:
        """A new table with these entries added (or overriding this table's)."""
        return KindTable({**self._statuses, **_checked(statuses or {})}, {**self._actions, **_checked(actions or {})})

    def __repr__(self) -> str:
        return f"KindTable(statuses={self._statuses!r}, actions={self._actions!r})"


DEFAULT_TABLE = KindTable(KIND_BY_STATUS, KIND_BY_ACTION)
