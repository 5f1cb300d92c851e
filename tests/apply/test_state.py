"""The state file: each commit on disk before it returns, concurrent commits sharing writes, one apply at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from sigma_async.apply import StateError, StateFile, default_state_path
from sigma_async.apply import _state as state_module


def test_the_state_file_sits_beside_the_channels_file() -> None:
    assert default_state_path("conf/channels.toml") == Path("conf/channels.state.json")


async def test_a_commit_is_on_disk_when_it_returns_and_read_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    store.state.mark_pending("a", "sha256:1")
    await store.commit()
    on_disk = json.loads(path.read_text())
    assert on_disk["channels"] == {"a": {"spec": "sha256:1", "pending": on_disk["channels"]["a"]["pending"]}}
    store.state.mark_created("a", "ch-1", "sha256:1")
    store.state.mark_created("b", "ch-2", "sha256:2")
    await store.commit()
    again = StateFile(path).state
    assert again.salt == store.state.salt and again.in_doubt() == []
    assert {n: (e.id, e.spec) for n, e in again.channels.items()} == {"a": ("ch-1", "sha256:1"),
                                                                      "b": ("ch-2", "sha256:2")}  # fmt: skip


async def test_commits_made_together_share_writes_and_each_returns_once_its_change_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[set[str]] = []
    real = state_module.replace_atomically

    def counting(path: Path, data: bytes) -> None:
        real(path, data)
        writes.append(set(json.loads(data)["channels"]))

    monkeypatch.setattr(state_module, "replace_atomically", counting)
    store = StateFile(tmp_path / "s.json")

    async def item(n: int) -> None:
        await anyio.sleep(0.001 * (n % 5))
        store.state.mark_pending(f"c{n}", "sha256:x")
        await store.commit()
        assert f"c{n}" in writes[-1], "returned before a write holding its change"

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(item, n)
    assert writes[-1] == {f"c{n}" for n in range(50)}
    assert len(writes) < 25, f"{len(writes)} writes for 50 commits"


async def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    store = StateFile(path)
    store.state.mark_created("a", "ch-1", "sha256:1")
    await store.commit()
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    store.state.mark_pending("b", "sha256:2")
    with pytest.raises(OSError, match="No space"):
        await store.commit()
    assert path.read_bytes() == before
    assert [p.name async for p in anyio.Path(tmp_path).iterdir()] == ["s.json"]


def test_one_apply_at_a_time_per_state_file(tmp_path: Path) -> None:
    first, second = StateFile(tmp_path / "s.json"), StateFile(tmp_path / "s.json")
    with first.lock(), pytest.raises(StateError, match="another apply is running"), second.lock():
        pass
    with second.lock():  # free again once the first is done
        pass


def test_a_write_cut_short_by_a_kill_leaves_nothing_behind_for_the_next_run(tmp_path: Path) -> None:
    leftover = tmp_path / ".s.json.abc123.tmp"
    leftover.write_text('{"half": ')
    with StateFile(tmp_path / "s.json").lock():
        assert not leftover.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not an apply state file"),
        ('{"version": 1, "salt": "00", "channels": {"a": {"spec": 1}}}', "is not an apply state file"),
        ('{"version": 9, "salt": "00", "channels": {}}', "state version 9 is not known"),
        ('{"version": 1, "salt": "zz", "channels": {}}', "the salt is not hexadecimal"),
    ],
)
def test_a_file_that_is_not_a_state_file_is_refused_by_name(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(StateError, match=message):
        StateFile(path)
