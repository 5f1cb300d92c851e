"""The public surface: the names users and outside checks rely on, each documented."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import sigma_async

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")

# The public contract of the design: renaming any of these breaks users.
CONTRACT = {
    "SigmaClient", "RetryPolicy", "ChannelCreate", "S3Destination", "Transition", "Channel", "Session", "Event",
    "Page", "SessionStatus", "SigmaError", "APIConnectionError", "APITimeoutError", "APIStatusError",
    "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError", "ConflictError",
    "UnprocessableEntityError", "RateLimitError", "ServerError", "ResponseDecodeError", "WatchError",
    "Live", "Stable", "Interrupted", "Restored", "Started", "Stopped", "Initializing", "Ended", "Unknown",
}  # fmt: skip


def test_all_is_exactly_what_the_package_exports() -> None:
    assert set(sigma_async.__all__) >= CONTRACT
    assert len(sigma_async.__all__) == len(set(sigma_async.__all__))
    for name in sigma_async.__all__:
        assert hasattr(sigma_async, name), name
    public = {n for n in vars(sigma_async) if not n.startswith("_") and n not in {"annotations"}}
    modules = {n for n in public if isinstance(getattr(sigma_async, n), type(sigma_async))}
    assert public - modules == set(sigma_async.__all__) - {"__version__"}


def test_every_public_name_is_documented_in_the_readme() -> None:
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", README))
    missing = sorted(n for n in sigma_async.__all__ if n not in words and n != "__version__")
    assert missing == []


def test_every_module_declares_all() -> None:
    for info in pkgutil.walk_packages(sigma_async.__path__, "sigma_async."):
        if info.name.endswith("__main__"):
            continue  # importing it would run the program
        module = importlib.import_module(info.name)
        assert isinstance(getattr(module, "__all__", None), list), info.name


def test_errors_form_the_documented_tree() -> None:
    e = sigma_async
    assert issubclass(e.APITimeoutError, e.APIConnectionError) and issubclass(e.APIConnectionError, e.SigmaError)
    for cls in (e.BadRequestError, e.AuthenticationError, e.PermissionDeniedError, e.NotFoundError,
                e.ConflictError, e.UnprocessableEntityError, e.RateLimitError, e.ServerError):
        assert issubclass(cls, e.APIStatusError) and issubclass(cls, e.SigmaError)
    assert issubclass(e.ResponseDecodeError, e.SigmaError) and issubclass(e.WatchError, e.SigmaError)
