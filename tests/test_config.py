"""Credentials from arguments, environment and .env files; the plain-http guard; the retry policy's waits."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from sigma_async import Credentials, RetryPolicy, SigmaClient
from sigma_async._config import check_base_url, read_env_file, settings_from_env
from sigma_async.errors import APIConnectionError, RateLimitError, ServerError


def test_env_file_is_read_with_or_without_prefix(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('# from the console\nUSERNAME=alice\nexport SECRET_KEY="s3cr=t"\nSIGMA_APP_ID=\'app-1\'\n')
    assert settings_from_env(env, environ={}) == {"username": "alice", "secret_key": "s3cr=t", "app_id": "app-1"}


def test_process_environment_wins_over_the_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SIGMA_USERNAME=file-user\nSIGMA_SECRET_KEY=file-key\nSIGMA_APP_ID=file-app\n")
    found = settings_from_env(env, environ={"SIGMA_USERNAME": "env-user", "SIGMA_BASE_URL": "https://x.test"})
    assert found == {"username": "env-user", "secret_key": "file-key", "app_id": "file-app", "base_url": "https://x.test"}


def test_from_env_builds_a_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("SIGMA_USERNAME", "SIGMA_SECRET_KEY", "SIGMA_APP_ID", "SIGMA_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    env = tmp_path / ".env"
    env.write_text("SIGMA_USERNAME=u\nSIGMA_SECRET_KEY=k\nSIGMA_APP_ID=a\n")
    client = SigmaClient.from_env(env)
    assert client.base_url == "https://api.sigma.video" and client.credentials.app_id == "a"
    monkeypatch.setenv("SIGMA_BASE_URL", "http://127.0.0.1:9")
    assert SigmaClient.from_env(env, app_id="b").credentials.app_id == "b"
    assert SigmaClient.from_env(env).base_url == "http://127.0.0.1:9"


def test_from_env_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SIGMA_USERNAME", "SIGMA_SECRET_KEY", "SIGMA_APP_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SIGMA_USERNAME", "u")
    with pytest.raises(ValueError, match="SIGMA_SECRET_KEY, SIGMA_APP_ID"):
        SigmaClient.from_env()


def test_malformed_env_line_is_reported_without_its_value(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SIGMA_USERNAME=u\nthis-is-my-secret-key-oops\n")
    with pytest.raises(ValueError, match="line 2") as info:
        read_env_file(env)
    assert "oops" not in str(info.value)


def test_credentials_repr_and_token() -> None:
    creds = Credentials("alice", "k3y", "app")
    assert creds.authorization == "Basic YWxpY2U6azN5"
    assert "k3y" not in repr(creds) and "YWxpY2U6azN5" not in repr(creds)
    with pytest.raises(ValueError, match="secret_key"):
        Credentials("alice", "", "app")
    with pytest.raises(ValueError, match="':'"):
        Credentials("al:ice", "k", "app")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9", "https://api.sigma.video/"]
)
def test_allowed_base_urls(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


def test_plain_http_to_another_host_needs_an_opt_in() -> None:
    with pytest.raises(ValueError, match="allow_insecure_http"):
        SigmaClient(username="u", secret_key="k", app_id="a", base_url="http://api.sigma.video")
    client = SigmaClient(
        username="u", secret_key="k", app_id="a", base_url="http://api.sigma.video", allow_insecure_http=True
    )
    assert client.base_url == "http://api.sigma.video"


@pytest.mark.parametrize("url", ["ftp://x", "https://u:p@host", "not a url", "https://h/?q=1"])
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(ValueError):
        check_base_url(url)


def test_backoff_grows_with_jitter_and_caps() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0)
    rng = random.Random(1)
    for retry, (low, high) in enumerate([(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (4.0, 8.0)], 1):
        waits = {policy.delay_for(retry, rng=rng) for _ in range(50)}
        assert all(low <= w <= high for w in waits) and len(waits) > 1
    assert policy.delay_for(1, retry_after=7) == 7


def test_what_is_retried() -> None:
    policy = RetryPolicy()
    refused = APIConnectionError("x", sent=False)
    dropped = APIConnectionError("x", sent=True)
    assert policy.is_retryable(dropped, "get") and not policy.is_retryable(dropped, "create")
    assert policy.is_retryable(refused, "create")
    assert not policy.is_retryable(ServerError("x", status_code=500), "create")
    assert policy.is_retryable(ServerError("x", status_code=503, retry_after=1), "create")
    assert not policy.is_retryable(ServerError("x", status_code=501), "get")
    assert not policy.is_retryable(RateLimitError("x", status_code=429, retry_after=61), "get")
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def test_logger_is_the_package_logger() -> None:
    assert logging.getLogger("sigma_async").name == "sigma_async"


def test_errors_survive_pickling_and_copying() -> None:
    import copy
    import pickle

    from sigma_async import NotFoundError, ResponseDecodeError, WatchError

    errors = [
        NotFoundError("gone", status_code=404, body={"message": "gone"}, request_id="r1", method="GET", path="/x"),
        RateLimitError("slow", status_code=429, retry_after=3.0),
        APIConnectionError("refused", method="GET", path="/x", sent=False),
        ResponseDecodeError("bad", status_code=200, snippet="<html>"),
        WatchError("silent"),
    ]
    for error in errors:
        for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
            assert type(clone) is type(error) and str(clone) == str(error)
            assert vars(clone) == vars(error)
