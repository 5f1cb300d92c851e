"""Cursor stores: what a restarted relay reads back, and what a kill or a torn file cannot do to it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sigma_async.relay import FileCursorStore, MemoryCursorStore, NatsCursorStore
from sigma_async.relay._kv import cursor_key, session_of
from sigma_async.testing import NatsServer


async def test_memory_store_keeps_the_last_cursor_per_session() -> None:
    store = MemoryCursorStore()
    await store.save("s-1", "c1")
    await store.save("s-1", "c2")
    await store.save("s-2", "d1")
    assert await store.load("s-1") == "c2" and await store.load("nope") is None
    assert await store.load_all() == {"s-1": "c2", "s-2": "d1"}


async def test_file_store_survives_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cursors.json"  # the directory is made on first use
    store = FileCursorStore(path)
    await store.save("s-1", "c1")
    await store.save("s.2~x", "d1")
    await store.aclose()
    again = FileCursorStore(path)
    assert await again.load_all() == {"s-1": "c1", "s.2~x": "d1"}
    assert await again.load("s-1") == "c1"


async def test_concurrent_saves_are_all_kept_and_share_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sigma_async.relay import _stores

    writes = 0
    real = _stores.replace_atomically

    def counting(path: Path, data: bytes) -> None:
        nonlocal writes
        writes += 1
        real(path, data)

    monkeypatch.setattr(_stores, "replace_atomically", counting)
    store = FileCursorStore(tmp_path / "cursors.json")
    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(store.save, f"s-{i}", f"c-{i}")
    assert await FileCursorStore(tmp_path / "cursors.json").load_all() == {f"s-{i}": f"c-{i}" for i in range(50)}
    assert writes < 50, "saves waiting on a write in flight are committed together by the next one"


def test_a_file_that_is_not_a_cursor_map_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "cursors.json"
    path.write_text('{"s-1": 5}')
    with pytest.raises(ValueError, match="not a cursor file"):
        FileCursorStore(path)
    path.write_text("{torn")
    with pytest.raises(ValueError, match=r"cursors\.json: not a cursor file \(invalid JSON\)"):
        FileCursorStore(path)


def test_bucket_keys_escape_what_nats_keys_cannot_hold() -> None:
    for sid in ("abc-123_X", "a.b", "x~y", "..~~"):
        key = cursor_key(sid)
        assert key.startswith("cursor.") and all(c.isalnum() or c in "-_=." for c in key)
        assert "." not in key[len("cursor."):] and session_of(key) == sid


async def test_nats_store_survives_a_new_connection() -> None:
    async with NatsServer() as server:
        store = await NatsCursorStore.open(f"{server.url}/relay-cursors")  # the bucket is made if missing
        assert await store.load("s-1") is None and await store.load_all() == {}
        await store.save("s-1", "c1")
        await store.save("s-1", "c2")
        await store.save("a.b~c", "d1")
        await store.aclose()
        again = await NatsCursorStore.open(f"{server.url}/relay-cursors")
        try:
            assert await again.load("s-1") == "c2"
            assert await again.load_all() == {"s-1": "c2", "a.b~c": "d1"}
        finally:
            await again.aclose()
