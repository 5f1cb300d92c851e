"""The ``sigma-async`` command line (also ``python -m sigma_async``): ``main(argv) -> exit status``.

Modules: ``_main`` (parser, dispatch, exit statuses), ``_commands`` (channels, sessions, events), ``_watch``,
``_output`` (tables, JSON lines, errors), ``_specs`` (``create-many`` input), ``_demo``, ``_extras`` (which
extra installs what), and one module per command that brings its own options (``_playback``, ``_relay``; see
``_main.COMMAND_MODULES`` for how to add one).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._extras import install_hint

__all__ = ["main"]

try:
    from ._main import main
except ImportError as exc:
    # As httpx does: an extra's module missing must give its install command, not a traceback.
    _hint = install_hint(exc.name)
    if _hint is None:
        raise
    _missing = f"{exc.name} is not installed"

    def main(argv: Sequence[str] | None = None) -> int:
        """Say which extra to install; exit status 1."""
        print(f"sigma-async: the command line cannot run: {_missing}. Install it with: {_hint}", file=sys.stderr)
        return 1
