"""Which optional extra installs which third-party module, so that a missing one is named with its fix."""

from __future__ import annotations

__all__ = ["EXTRAS", "install_hint"]

#: Top-level module -> the ``sigma-async[...]`` extra that installs it.
EXTRAS = {"rich": "cli", "nats": "nats", "prometheus_client": "metrics"}


def install_hint(module: str | None) -> str | None:
    """``pip install 'sigma-async[nats]'`` for a module an extra provides (``nats.js`` too); None otherwise."""
    extra = EXTRAS.get((module or "").partition(".")[0])
    return None if extra is None else f"pip install 'sigma-async[{extra}]'"
