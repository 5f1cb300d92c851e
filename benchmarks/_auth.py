"""What every benchmarked client sends: the API prefix and the same credential headers, byte for byte."""

from __future__ import annotations

import base64
from typing import Final

from sigma_async.testing import DEFAULT_APP_ID, DEFAULT_SECRET_KEY, DEFAULT_USERNAME

__all__ = ["API", "auth_headers"]

API: Final = "/api/livestream"


def auth_headers() -> dict[str, str]:
    """The headers every client sends: the same bytes on the wire for all three."""
    token = base64.b64encode(f"{DEFAULT_USERNAME}:{DEFAULT_SECRET_KEY}".encode()).decode("ascii")
    return {
        "Authorization": f"Basic {token}",
        "X-App-Id": DEFAULT_APP_ID,
        "User-Agent": "bench/1.0",
        "Accept": "application/json",
    }
