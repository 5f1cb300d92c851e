"""A channel spec's digest, which changes when any of its values does, secrets included, and reveals none."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

from ._spec import DesiredChannel

__all__ = ["prepare_fingerprints", "spec_digest"]

#: scrypt's cost: about 32 MiB and a tenth of a second per distinct secret per run.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def spec_digest(channel: DesiredChannel, salt: str) -> str:
    """``sha256:<hex>`` of the create request's body, each secret in it replaced by its salted scrypt.

    The body is what the API receives, so two files that would send the same request have the same digest
    (writing a default out changes nothing). A plain hash of a body whose other fields are all in the file would
    let anyone holding the state test guesses of the secret at hash speed; through scrypt with the state's own
    salt, each guess costs a tenth of a second and tables computed for other states are of no use.
    """
    body = msgspec.to_builtins(channel.spec.to_body())
    masked = _mask(body, channel.secrets, salt) if channel.secrets else body
    return "sha256:" + hashlib.sha256(msgspec.json.encode(masked, order="sorted")).hexdigest()


def prepare_fingerprints(channels: Iterable[DesiredChannel], salt: str) -> None:
    """Compute every secret's fingerprint ahead of ``spec_digest``, which then finds them ready.

    Blocking (scrypt): run it in a worker thread, where it overlaps the reads of the server.
    """
    for secret in {s for channel in channels for s in channel.secrets}:
        _fingerprint(secret, salt)


def _mask(value: Any, secrets: frozenset[str], salt: str) -> Any:
    if isinstance(value, str):
        return "scrypt:" + _fingerprint(value, salt) if value in secrets else value
    if isinstance(value, dict):
        return {k: _mask(v, secrets, salt) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secrets, salt) for v in value]
    return value


@functools.lru_cache(maxsize=64)
def _fingerprint(secret: str, salt: str) -> str:
    # Cached: the same secret (a shared S3 key from [defaults]) is usually in every channel of a file.
    derived = hashlib.scrypt(
        secret.encode(), salt=bytes.fromhex(salt), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024,
        dklen=32,
    )
    return derived.hex()
