"""Test setup shared by every test module."""

from importlib.metadata import entry_points

import pytest

from sigma_async.testing import Emulator

# Installed, the package's pytest plugin comes in through its entry point; from a bare source tree, load it here.
if not any(ep.value == "sigma_async.testing.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["sigma_async.testing.pytest_plugin"]


@pytest.fixture
def emu(sigma_emulator: Emulator) -> Emulator:
    """The emulator fixture the package ships for its users' own tests, under a short name (a module that
    needs another seed or clock defines its own ``emu``)."""
    return sigma_emulator
