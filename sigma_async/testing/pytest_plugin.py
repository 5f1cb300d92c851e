"""pytest fixtures for testing code that uses sigma-async: ``sigma_emulator`` and ``sigma_client``.

Registered through the ``pytest11`` entry point. Both fixtures are async and need pytest-asyncio; without it
they skip, and nothing else about the test run changes.

>>> async def test_goes_live(sigma_emulator, sigma_client):
...     ch = await sigma_client.channels.create(ChannelCreate(name="news"))
...     await sigma_client.channels.start(ch.id)
...     sigma_emulator.connect_publisher(ch.id)
...     assert (await sigma_client.channels.get(ch.id)).current_session_id
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._client import SigmaClient
    from ._emulator import Emulator

__all__ = ["sigma_client", "sigma_emulator"]

try:
    import pytest_asyncio

    HAVE_PYTEST_ASYNCIO = True
except ImportError:  # pragma: no cover - only where pytest-asyncio is absent
    HAVE_PYTEST_ASYNCIO = False


if HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def sigma_emulator() -> AsyncIterator[Emulator]:
        """A started emulator with a manual clock: time moves only with ``sigma_emulator.clock.advance()``."""
        from ._emulator import Emulator

        async with Emulator(manual_clock=True, seed=0) as emulator:
            yield emulator

    @pytest_asyncio.fixture
    async def sigma_client(sigma_emulator: Emulator) -> AsyncIterator[SigmaClient]:
        """An open ``SigmaClient`` bound to ``sigma_emulator``."""
        async with sigma_emulator.client() as client:
            yield client

else:  # pragma: no cover

    @pytest.fixture
    def sigma_emulator() -> Any:
        pytest.skip("the sigma_emulator fixture needs pytest-asyncio")

    @pytest.fixture
    def sigma_client() -> Any:
        pytest.skip("the sigma_client fixture needs pytest-asyncio")
