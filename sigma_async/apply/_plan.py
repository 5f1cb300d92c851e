"""The plan: what to do to bring the server to the file, from what the file, the state and the server say. No I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Union

from ._digest import spec_digest
from ._spec import DesiredChannel
from ._state import ApplyState

__all__ = [
    "Action",
    "ActionKind",
    "Gone",
    "Observation",
    "Plan",
    "Seen",
    "Unreadable",
    "plan",
]

ActionKind = Literal["create", "start", "stop", "delete", "replace", "in_doubt", "read"]

#: How each kind is shown in the plan as printed.
SYMBOLS: dict[str, str] = {
    "create": "+", "start": "~", "stop": "~", "delete": "-", "replace": "!", "in_doubt": "?", "read": "?",
}  # fmt: skip


@dataclass(frozen=True)
class Seen:
    """The channel exists; ``running`` when it has a current session."""

    running: bool


@dataclass(frozen=True)
class Gone:
    """The channel's id answered 404: it was deleted behind apply's back."""


@dataclass(frozen=True)
class Unreadable:
    """The channel could not be read (the server failed, or timed out): ``error`` says how."""

    error: str


Observation = Union[Seen, Gone, Unreadable]  # noqa: UP007 - a runtime alias on Python 3.10


@dataclass(frozen=True)
class Action:
    """One item of the plan, for one name.

    ``kind`` is what happens: ``create`` (then ``start`` it if ``start_after``), ``start``, ``stop``, ``delete``
    (stopped first if ``stop_first``), ``replace`` (delete, create again from the file, start if ``start_after``).
    ``in_doubt`` and ``read`` are never carried out: they report a name apply cannot act on. ``held`` says why an
    action is not carried out (``replace`` without ``--replace``); ``reason`` explains it in a few words.
    """

    kind: ActionKind
    name: str
    channel_id: str | None = None
    spec: str = ""
    start_after: bool = False
    stop_first: bool = False
    reason: str = ""
    held: str | None = None

    @property
    def runs(self) -> bool:
        """Whether executing the plan carries this action out."""
        return self.held is None

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.kind]


@dataclass
class Plan:
    """The actions in file order (then names only the state has), with the names needing nothing."""

    actions: list[Action] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: In the state but not in the file, and left alone without ``prune``.
    kept: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> list[Action]:
        return [a for a in self.actions if a.runs]

    @property
    def held(self) -> list[Action]:
        return [a for a in self.actions if not a.runs]


def plan(
    desired: Sequence[DesiredChannel],
    state: ApplyState,
    observed: Mapping[str, Observation],
    *,
    prune: bool = False,
    replace: bool = False,
) -> Plan:
    """What to do, given the file (``desired``), the ``state`` and ``observed``: what the server said of each
    name the state has an id for (a name missing from ``observed`` counts as unreadable).

    >>> plan([DesiredChannel("a", ChannelCreate(name="a"), running=True)], ApplyState(), {}).actions
    [Action(kind='create', name='a', ..., start_after=True, ...)]
    """
    result = Plan()
    wanted = {d.name for d in desired}
    for channel in desired:
        result.actions += _for_desired(channel, state, observed, replace, result)
    for name, entry in state.channels.items():
        if name in wanted:
            continue
        if entry.pending is not None:
            result.actions.append(_in_doubt(name, entry.pending, in_file=False))
        elif not prune:
            result.kept.append(name)
        else:
            seen = observed.get(name, _NOT_READ)
            if isinstance(seen, Unreadable):
                result.actions.append(Action("read", name, entry.id, reason=seen.error, held=seen.error))
            elif isinstance(seen, Gone):
                # Deleted already: only the state forgets it (the delete's 404 is taken as done).
                result.actions.append(Action("delete", name, entry.id, reason="already deleted outside apply"))
            else:
                reason = "running: stopped first" if seen.running else ""
                result.actions.append(Action("delete", name, entry.id, stop_first=seen.running, reason=reason))
    return result


_NOT_READ = Unreadable("not read")


def _for_desired(
    channel: DesiredChannel, state: ApplyState, observed: Mapping[str, Observation], replace: bool, result: Plan
) -> list[Action]:
    name = channel.name
    digest = spec_digest(channel, state.salt)
    entry = state.channels.get(name)
    if entry is None:
        return [Action("create", name, spec=digest, start_after=channel.running)]
    if entry.pending is not None:
        return [_in_doubt(name, entry.pending, in_file=True)]
    seen = observed.get(name, _NOT_READ)
    if isinstance(seen, Unreadable):
        return [Action("read", name, entry.id, reason=seen.error, held=seen.error)]
    if isinstance(seen, Gone):
        return [Action("create", name, spec=digest, start_after=channel.running,
                       reason="deleted outside apply: created again")]  # fmt: skip
    actions: list[Action] = []
    if entry.spec != digest:
        if replace:
            return [Action("replace", name, entry.id, spec=digest, start_after=channel.running,
                           stop_first=seen.running, reason="spec changed: new stream key and URLs")]  # fmt: skip
        held = "spec changed: the API cannot update a channel; --replace deletes and re-creates it"
        actions.append(Action("replace", name, entry.id, spec=digest, reason=held, held=held))
    # The running state is brought in line even while a changed spec waits for --replace.
    if channel.running and not seen.running:
        actions.append(Action("start", name, entry.id))
    elif seen.running and not channel.running:
        actions.append(Action("stop", name, entry.id))
    if not actions:
        result.unchanged.append(name)
    return actions


def _in_doubt(name: str, since: str, *, in_file: bool) -> Action:
    why = (
        f"a create sent at {since} has no recorded answer, so the channel may exist: look for {name!r} in the "
        f"console, then run again with --forget {name} if it is not there, or --adopt {name}=CHANNEL_ID if it is"
    )
    if not in_file:
        why += " (it is no longer in the file)"
    return Action("in_doubt", name, reason=why, held=why)
