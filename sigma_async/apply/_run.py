"""``apply``: read the server, plan, and carry the plan out with bounded concurrency, recording each step."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from .._client import SigmaClient
from .._protocol import redact_text
from ..bulk import run_bounded
from ..errors import (
    APIStatusError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    SigmaError,
    sole_exception,
)
from ..models import Channel
from ._digest import prepare_fingerprints, spec_digest
from ._plan import Action, Gone, Observation, Plan, Seen, Unreadable, plan
from ._spec import DesiredChannel
from ._state import StateFile

__all__ = ["ApplyReport", "ItemResult", "apply"]


@dataclass(frozen=True)
class ItemResult:
    """What became of one action: ``ok`` is None for an action planned but not carried out (``dry_run``)."""

    action: str
    name: str
    channel_id: str | None
    ok: bool | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` line: ``{"action", "name", "channel_id", "ok", "error"}``."""
        return {"action": self.action, "name": self.name, "channel_id": self.channel_id, "ok": self.ok,
                "error": self.error}  # fmt: skip


@dataclass
class ApplyReport:
    """The plan and what became of each of its actions, in the order they settled."""

    plan: Plan
    results: list[ItemResult] = field(default_factory=list)
    #: Names whose create may or may not have happened: found pending, or sent in this run without an answer.
    in_doubt: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Whether the server now matches the file (for a dry run: whether it could)."""
        return all(r.ok is not False for r in self.results)


async def apply(
    client: SigmaClient,
    desired: Sequence[DesiredChannel],
    *,
    state: str | os.PathLike[str],
    prune: bool = False,
    replace: bool = False,
    dry_run: bool = False,
    concurrency: int = 16,
    forget: Collection[str] = (),
    adopt: Mapping[str, str] | None = None,
    on_plan: Callable[[Plan], object] | None = None,
    on_result: Callable[[ItemResult], object] | None = None,
    on_progress: Callable[[int, int], object] | None = None,
) -> ApplyReport:
    """Bring the server to ``desired``; ``state`` is the path of the state file (created when missing).

    >>> report = await apply(client, load_desired("channels.toml"), state="channels.state.json")
    >>> report.ok, [r.to_dict() for r in report.results]

    Reads every channel the state knows, plans (``on_plan`` sees the plan before anything changes), then runs
    the plan with at most ``concurrency`` requests in flight through the client. ``forget`` drops names from the
    state (a create in doubt the console shows never happened, or a channel to stop managing); ``adopt`` maps a
    name in doubt to the channel the console shows was created. ``dry_run`` only reads. ``on_result`` hears of
    each item as it settles; ``on_progress(done, total)`` counts them. Raises ``StateError`` when the state file
    cannot be used, ``ValueError`` for a bad ``forget`` or ``adopt``, and the ``SigmaError`` of wrong credentials.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    store = StateFile(state)
    by_name = {d.name: d for d in desired}
    secrets = tuple(sorted({s for d in desired for s in d.secrets if s} | set(client.credentials.secrets())))
    with contextlib.nullcontext() if dry_run else store.lock():
        _forget(store, forget, by_name)
        await _adopt(client, store, adopt or {}, by_name)
        if (forget or adopt) and not dry_run:
            await store.commit()
        async with _task_group() as tg:
            # scrypt off the event loop, while the server is read; plan() then finds the fingerprints ready.
            tg.start_soon(anyio.to_thread.run_sync, prepare_fingerprints, desired, store.state.salt)
            observed = await _observe(client, store, by_name, prune, concurrency, secrets)
        the_plan = plan(desired, store.state, observed, prune=prune, replace=replace)
        if on_plan is not None:
            on_plan(the_plan)
        report = ApplyReport(the_plan, dry_run=dry_run)

        def settle(item: ItemResult) -> None:
            report.results.append(item)
            if on_result is not None:
                on_result(item)

        for action in the_plan.held:
            if action.kind == "in_doubt":
                report.in_doubt.append(action.name)
            settle(ItemResult(action.kind, action.name, action.channel_id, False, action.held))
        if dry_run:
            for action in the_plan.runnable:
                settle(ItemResult(action.kind, action.name, action.channel_id, None))
            return report
        actions = the_plan.runnable
        # Records that nothing waits on (an id once known, a name dropped) are written by commits in the
        # background, so an item does not hold its slot for them; leaving the group waits for every one.
        async with _task_group() as background:
            executor = _Executor(client, store, by_name, secrets, background)

            def done(index: int, outcome: object) -> None:
                item = executor.result(actions[index], outcome)
                if item.name in executor.doubt:
                    report.in_doubt.append(item.name)
                settle(item)

            try:
                await run_bounded(
                    [partial(executor.run, action) for action in actions],
                    concurrency=concurrency, on_result=done, on_progress=on_progress,
                )  # fmt: skip
            finally:
                # Cancelled (Ctrl-C) or not, every answer already in is written before apply returns: a create
                # that succeeded is then recorded as such, and only those cut off in flight stay in doubt.
                with anyio.CancelScope(shield=True):
                    await store.commit()
    return report


@contextlib.asynccontextmanager
async def _task_group() -> AsyncIterator[TaskGroup]:
    """A task group that raises a lone failure as itself, not wrapped in an exception group."""
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except Exception as exc:
        inner = sole_exception(exc)
        if inner is exc:
            raise
        raise inner from None


def _forget(store: StateFile, names: Collection[str], by_name: Mapping[str, DesiredChannel]) -> None:
    """Drop names from the state, refusing any that would make a second channel of one that exists."""
    for name in names:
        entry = store.state.channels.get(name)
        if entry is None:
            raise ValueError(f"cannot forget {name!r}: the state has no such name")
        if entry.pending is None and name in by_name:
            raise ValueError(
                f"cannot forget {name!r}: it is channel {entry.id} and still in the file, so apply would create a "
                "second one; remove it from the file first (forgetting only stops apply managing it)"
            )
    for name in names:
        store.state.drop(name)


async def _adopt(
    client: SigmaClient, store: StateFile, adopt: Mapping[str, str], by_name: Mapping[str, DesiredChannel]
) -> None:
    """Record existing channels as created from the file: each must be in the file, and named so on the server."""
    for name, channel_id in adopt.items():
        if name not in by_name:
            raise ValueError(f"cannot adopt {channel_id} as {name!r}: the file has no channel of that name")
        entry = store.state.channels.get(name)
        if entry is not None and entry.pending is None:
            raise ValueError(f"cannot adopt {channel_id} as {name!r}: the state has it as channel {entry.id} already")
        try:
            channel = await client.channels.get(channel_id)
        except NotFoundError:
            raise ValueError(f"cannot adopt {channel_id} as {name!r}: the server has no such channel") from None
        if channel.name != name:
            raise ValueError(f"cannot adopt {channel_id} as {name!r}: that channel is named {channel.name!r}")
        store.state.mark_created(name, channel_id, spec_digest(by_name[name], store.state.salt))


async def _observe(
    client: SigmaClient,
    store: StateFile,
    by_name: Mapping[str, DesiredChannel],
    prune: bool,
    concurrency: int,
    secrets: Sequence[str],
) -> dict[str, Observation]:
    """What the server says of each channel the plan depends on: those in the file, and with ``prune`` the rest."""
    ids = {
        name: entry.id for name, entry in store.state.channels.items()
        if entry.id is not None and (prune or name in by_name)
    }  # fmt: skip
    names = list(ids)
    answers = await run_bounded(
        [partial(client.channels.get, ids[name]) for name in names], concurrency=concurrency
    )  # fmt: skip
    observed: dict[str, Observation] = {}
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, Channel):
            observed[name] = Seen(running=answer.current_session_id is not None)
        elif isinstance(answer, NotFoundError):
            observed[name] = Gone()
        elif isinstance(answer, (AuthenticationError, PermissionDeniedError)):
            raise answer  # every other read failed the same way: nothing can be planned
        else:
            observed[name] = Unreadable("cannot read the channel: " + describe(answer, secrets))
    return observed


class _Executor:
    """Carries out one action at a time per caller, recording each change in the state before it matters."""

    def __init__(
        self,
        client: SigmaClient,
        store: StateFile,
        by_name: Mapping[str, DesiredChannel],
        secrets: Sequence[str],
        background: TaskGroup,
    ) -> None:
        self.client = client
        self.background = background
        self.store = store
        self.by_name = by_name
        self.secrets = secrets
        self.doubt: set[str] = set()  # creates sent in this run whose outcome is unknown
        self.created: dict[str, str] = {}  # ids of channels created in this run

    async def run(self, action: Action) -> str | None:
        """Carry ``action`` out; return its channel id. A ``SigmaError`` is that item's failure."""
        if action.kind == "create":
            return await self.create(action)
        assert action.channel_id is not None
        if action.kind == "start":
            await self.start(action.channel_id)
        elif action.kind == "stop":
            await self.stop(action.channel_id)
        elif action.kind == "delete":
            await self.remove(action.channel_id, stop_first=action.stop_first)
            self.store.state.drop(action.name)
            self.background.start_soon(self.store.commit)
        elif action.kind == "replace":
            await self.remove(action.channel_id, stop_first=action.stop_first)
            return await self.create(action)
        return action.channel_id

    async def create(self, action: Action) -> str:
        name, state = action.name, self.store.state
        # On disk before the request leaves: a crash from here on leaves the name in doubt, never forgotten.
        state.mark_pending(name, action.spec)
        await self.store.commit()
        try:
            channel = await self.client.channels.create(self.by_name[name].spec)
        except APIStatusError as exc:
            if 400 <= exc.status_code < 500:  # refused: nothing was created
                state.drop(name)
                self.background.start_soon(self.store.commit)
            else:
                self.doubt.add(name)
            raise
        except SigmaError:
            self.doubt.add(name)  # no answer: it may have been created
            raise
        except BaseException:
            self.doubt.add(name)  # cancelled in flight: the pending mark stays, and the next run names it
            raise
        state.mark_created(name, channel.id, action.spec)
        self.created[name] = channel.id
        # Not awaited: until it is written the name reads as pending, so a crash meanwhile costs an "in doubt",
        # never a duplicate; and this item's slot goes to the next one at once.
        self.background.start_soon(self.store.commit)
        if action.start_after:
            await self.start(channel.id)
        return channel.id

    async def start(self, channel_id: str) -> None:
        with contextlib.suppress(ConflictError):  # started already: as the file asks
            await self.client.channels.start(channel_id)

    async def stop(self, channel_id: str) -> None:
        with contextlib.suppress(ConflictError):  # its session ended meanwhile: stopped, as the file asks
            await self.client.channels.stop(channel_id)

    async def remove(self, channel_id: str, *, stop_first: bool) -> None:
        try:
            if stop_first:
                await self.stop(channel_id)
            await self.client.channels.delete(channel_id)
        except NotFoundError:
            pass  # deleted already

    def result(self, action: Action, outcome: object) -> ItemResult:
        """The ``ItemResult`` of an action from what ``run`` returned or raised."""
        if not isinstance(outcome, BaseException):
            channel_id = outcome if isinstance(outcome, str) else action.channel_id
            return ItemResult(action.kind, action.name, channel_id, True)
        channel_id = self.created.get(action.name, action.channel_id if action.kind != "replace" else None)
        error = describe(outcome, self.secrets)
        if action.name in self.created and action.start_after:
            error = f"created, but not started: {error}"
        elif action.name in self.doubt or (isinstance(outcome, OutcomeUnknownError) and action.spec):
            self.doubt.add(action.name)
            error = (
                f"in doubt: {error}; the create may have reached the server, and the next run will say so until "
                f"the console is checked"
            )
        return ItemResult(action.kind, action.name, channel_id, False, error)


def describe(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """``HTTP 400: <the API's message> (BadRequestError)``, with every known secret hidden."""
    if isinstance(exc, APIStatusError):
        text = f"HTTP {exc.status_code}: {exc.message} ({type(exc).__name__})"
    else:
        text = f"{exc} ({type(exc).__name__})"
    return redact_text(text, secrets)
