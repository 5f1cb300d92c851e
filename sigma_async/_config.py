"""Credentials and settings: from arguments, ``SIGMA_*`` environment variables or a ``.env`` file."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_VARS",
    "USER_AGENT",
    "Credentials",
    "check_base_url",
    "is_loopback_host",
    "read_env_file",
    "secret_pattern",
    "settings_from_env",
]

DEFAULT_BASE_URL = "https://api.sigma.video"
USER_AGENT = f"sigma-async/{__version__}"
ENV_VARS = {
    "username": "SIGMA_USERNAME",
    "secret_key": "SIGMA_SECRET_KEY",
    "app_id": "SIGMA_APP_ID",
    "base_url": "SIGMA_BASE_URL",
}
REDACTED = "***"


@dataclass(frozen=True)
class Credentials:
    """The three values every request carries. ``repr`` never shows the secret key or the token."""

    username: str
    secret_key: str = field(repr=False)
    app_id: str

    def __post_init__(self) -> None:
        for name in ("username", "secret_key", "app_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string (argument or {ENV_VARS[name]})")
            if any(c in value for c in "\r\n\x00"):
                raise ValueError(f"{name} must not contain line breaks or NUL")
        if ":" in self.username:
            # Basic auth splits user and password at the first colon: a colon in the username cannot round-trip.
            raise ValueError("username must not contain ':'")

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value: ``Basic base64(username:secret_key)``."""
        raw = f"{self.username}:{self.secret_key}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never be logged or shown: the key and the token built from it."""
        token = self.authorization
        return (self.secret_key, token, token.removeprefix("Basic "))

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret_key={REDACTED!r}, app_id={self.app_id!r})"


@lru_cache(maxsize=32)
def secret_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """A regex that finds each secret in every form a server may echo it in: as is, JSON-escaped (``\\"``,
    ``\\\\``, ``\\u00e9`` in either case, ``\\/``) and percent-encoded (``%C3%A9`` in either case, ``+``
    for a space), characters of each form mixed freely. None when there is nothing to find.

    Built once per set of credentials, used only on error paths.
    """
    alternatives = sorted({_any_form(s) for s in secrets if s}, key=len, reverse=True)
    return re.compile("|".join(alternatives)) if alternatives else None


def _any_form(secret: str) -> str:
    return "".join(_char_forms(c) for c in secret)


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t"}


def _char_forms(c: str) -> str:
    forms: list[str] = [re.escape(c)]
    if c in _SHORT_ESCAPES:
        forms.append(re.escape(_SHORT_ESCAPES[c]))
    code = ord(c)
    if code > 0xFFFF:  # JSON writes it as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"\\u(?i:{high:04x})\\u(?i:{low:04x})")
    else:
        forms.append(rf"\\u(?i:{code:04x})")
    forms.append("".join(f"%(?i:{b:02x})" for b in c.encode("utf-8")))
    if c == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional ``export`` and quotes.

    Values are returned, never printed; a malformed line is reported by its number only, since a line
    may hold a secret.
    """
    values: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8-sig")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise ValueError(f"{os.fspath(path)}: line {number} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def settings_from_env(
    env_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Collect ``username``, ``secret_key``, ``app_id`` and ``base_url`` from the environment and a file.

    Process environment variables win over the file. In the file, the ``SIGMA_`` prefix is optional
    (``USERNAME=`` or ``SIGMA_USERNAME=``), matching the console's "Download as .env file".
    """
    environ = os.environ if environ is None else environ
    file_values = read_env_file(env_file) if env_file is not None else {}
    found: dict[str, str] = {}
    for name, var in ENV_VARS.items():
        bare = var.removeprefix("SIGMA_")
        for source in (environ.get(var), file_values.get(var), file_values.get(bare)):
            if source:
                found[name] = source
                break
    return found


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` names this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """Validate ``base_url`` and return it without a trailing slash.

    Basic credentials are readable by anyone on the path over plain HTTP, so ``http://`` is refused for
    any host but loopback unless the caller opts in.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.username or parts.password:
        raise ValueError("base_url must not carry credentials; pass username= and secret_key=")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query or fragment")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"refusing to send credentials over plain http to {parts.hostname}; "
            "use https, or pass allow_insecure_http=True if the network is trusted"
        )
    return base_url.rstrip("/")
