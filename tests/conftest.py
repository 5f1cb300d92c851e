"""Test setup shared by every test module."""

from importlib.metadata import entry_points

# Installed, the package's pytest plugin comes in through its entry point; from a bare source tree, load it here.
if not any(ep.value == "sigma_async.testing.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["sigma_async.testing.pytest_plugin"]
