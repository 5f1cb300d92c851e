"""Webhook signatures: what a receiver's ``verify_signature`` accepts and refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sigma_async.relay import sign, verify_signature

BODY = b'{"kind":"live","session_id":"s-1","id":"s-1/status/live"}'
SECRET = "whsec-test"
T = 1_700_000_000
#: Digits to str.isdigit() yet not ASCII: int() would read them, a receiver must not.
FULLWIDTH = f"t=\uff11\uff12\uff13,v1={'0' * 64}"


class TestVerifySignature:
    def test_the_header_is_the_documented_hmac(self) -> None:
        # A receiver in another language computes exactly this; the format is the contract.
        expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
        assert sign(BODY, SECRET, timestamp=T) == f"t={T},v1={expected}"

    def test_a_fresh_signature_verifies(self) -> None:
        assert verify_signature(BODY, sign(BODY, SECRET, timestamp=T), SECRET, now=T + 299)
        assert verify_signature(BODY, sign(BODY, SECRET.encode(), timestamp=T), SECRET.encode(), now=T)

    def test_the_current_time_is_the_default(self) -> None:
        import time

        assert verify_signature(BODY, sign(BODY, SECRET, timestamp=int(time.time())), SECRET)

    @pytest.mark.parametrize(
        ("body", "secret"),
        [(BODY + b" ", SECRET), (BODY.replace(b"live", b"ended"), SECRET), (BODY, "another-secret")],
        ids=["body-appended", "body-changed", "wrong-secret"],
    )
    def test_a_changed_body_or_another_secret_fails(self, body: bytes, secret: str) -> None:
        assert not verify_signature(body, sign(BODY, SECRET, timestamp=T), secret, now=T)

    @pytest.mark.parametrize("skew", [301, -301, 10_000])
    def test_an_old_or_future_timestamp_fails(self, skew: int) -> None:
        assert not verify_signature(BODY, sign(BODY, SECRET, timestamp=T), SECRET, now=T + skew)

    def test_tolerance_is_the_receivers_choice(self) -> None:
        header = sign(BODY, SECRET, timestamp=T)
        assert verify_signature(BODY, header, SECRET, tolerance=3600, now=T + 3000)
        assert not verify_signature(BODY, header, SECRET, tolerance=10, now=T + 11)

    def test_a_rotated_secret_verifies_with_either_value(self) -> None:
        old, new = sign(BODY, "old", timestamp=T), sign(BODY, "new", timestamp=T)
        header = f"{new},v1={old.split('v1=')[1]}"
        assert verify_signature(BODY, header, "old", now=T)
        assert verify_signature(BODY, header, "new", now=T)
        assert not verify_signature(BODY, header, "other", now=T)

    @pytest.mark.parametrize(
        "header",
        [None, "", "garbage", "t=,v1=", f"t={T}", "v1=abc", f"t=abc,v1={'0' * 64}", f"t={T},v1=é", f"t=-{T},v1=00",
         f"t={T},v1={'a' * 64},x", "t=" + "9" * 5000, FULLWIDTH],
    )
    def test_anything_malformed_is_false_never_an_exception(self, header: str | None) -> None:
        assert verify_signature(BODY, header, SECRET, now=T) is False

    def test_an_empty_secret_never_verifies(self) -> None:
        assert not verify_signature(BODY, sign(BODY, "", timestamp=T), "", now=T)
