"""The channels file: defaults, ${NAME} from the environment, and every mistake named by its line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigma_async import DEFAULT_PROFILES, ChannelCreate, S3Destination
from sigma_async.apply import SpecFileError, load_desired, parse_desired

ENV = {"S3_SECRET_KEY": "s3-secret-from-env", "BUCKET": "vod"}

GOOD = """\
[defaults]
stop_timeout = 60
tags = ["school"]

[defaults.destination_catchup]
access_key = "AK"
secret_key = "${S3_SECRET_KEY}"
bucket = "${BUCKET}"
endpoint = "https://s3.example.com"
region = "hn"

[[channel]]
name = "room-1"
running = true

[[channel]]
name = "room-2"
tags = ["lab", "$${NOT_A_REFERENCE}"]
stop_timeout = 30
machine = { enabled = false }
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SpecFileError) as caught:
        parse_desired(text, source="channels.toml", env=ENV if env is None else env)
    assert str(caught.value) == "\n".join(p.describe("channels.toml") for p in caught.value.problems)
    return [p.describe("channels.toml") for p in caught.value.problems]


def test_channels_take_the_defaults_and_override_them_key_by_key() -> None:
    one, two = parse_desired(GOOD, env=ENV)
    assert (one.name, one.running, one.line, two.running, two.line) == ("room-1", True, 12, False, 16)
    destination = S3Destination(access_key="AK", secret_key="s3-secret-from-env", bucket="vod",
                                endpoint="https://s3.example.com", region="hn")  # fmt: skip
    assert one.spec == ChannelCreate(name="room-1", stop_timeout=60, tags=["school"], destination_catchup=destination)
    assert two.spec.tags == ["lab", "${NOT_A_REFERENCE}"] and two.spec.stop_timeout == 30  # $$ is a literal $
    assert two.spec.machine.enabled is False and two.spec.transcode_profile == list(DEFAULT_PROFILES)
    # Values from the environment, and the S3 secret whatever its source, are the secrets the state never holds.
    assert one.secrets == frozenset({"s3-secret-from-env", "vod"})
    assert "s3-secret-from-env" not in repr(one)


def test_load_desired_reads_a_file_and_names_it_in_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "channels.toml"
    path.write_text('[[channel]]\nname = "a"\nrunning = "yes"\n')
    with pytest.raises(SpecFileError, match=r"channels.toml:3: running: expected true or false, got a string"):
        load_desired(path)
    with pytest.raises(SpecFileError, match=r"missing.toml: cannot read: No such file"):
        load_desired(tmp_path / "missing.toml")


def test_an_unknown_key_is_named_with_its_line_and_the_key_it_resembles() -> None:
    assert problems('[[channel]]\nname = "a"\nstop_timout = 60\n') == [
        "channels.toml:3: stop_timout: unknown key (did you mean stop_timeout?)"
    ]
    assert problems('[defaults]\n[defaults.destination_catchup]\nsecret = "x"\n\n[[channel]]\nname = "a"\n') == [
        "channels.toml:2: defaults.destination_catchup: missing access_key, bucket, endpoint, secret_key, region",
        "channels.toml:3: defaults.destination_catchup.secret: unknown key (did you mean secret_key?)",
    ]
    assert problems('channels = 1\n[[channel]]\nname = "a"\n') == [
        "channels.toml:1: channels: unknown key: a channels file holds [defaults] and [[channel]] tables"
    ]


def test_a_duplicate_name_is_named_with_both_lines() -> None:
    text = '[[channel]]\nname = "a"\n\n[[channel]]\nname = "b"\n\n[[channel]]\nname = "a"\n'
    assert problems(text) == ["channels.toml:8: name: duplicate name 'a' (first at line 2)"]


def test_a_wrong_type_is_named_without_showing_the_value() -> None:
    text = (
        '[[channel]]\nname = "a"\nstop_timeout = "60"\ntags = ["x", 1]\n'
        'destination_catchup = { access_key = "AK", secret_key = 12345, bucket = "b", endpoint = "e", region = "r" }\n'
    )
    assert problems(text) == [
        "channels.toml:3: stop_timeout: expected a whole number of seconds, got a string",
        "channels.toml:4: tags: expected an array of strings, got an integer in it",
        "channels.toml:5: destination_catchup.secret_key: expected a string, got an integer",
    ]
    assert problems('[[channel]]\nname = "a"\nstop_timeout = -1\n') == [
        "channels.toml:3: stop_timeout: expected a whole number of seconds >= 0, got a negative number"
    ]


def test_an_unset_variable_is_named_with_the_line_of_the_key_that_uses_it() -> None:
    text = GOOD.replace("${BUCKET}", "${S3_BUCKET}")
    assert problems(text) == ["channels.toml:8: defaults.destination_catchup.bucket: ${S3_BUCKET} is not set in the "
                              "environment"]  # fmt: skip
    assert problems('[[channel]]\nname = "a"\ndescription = "${oops"\n')[0].startswith(
        "channels.toml:3: description: malformed reference ${oops: write ${NAME}, or $$ for a $"
    )


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = '[[channel]]\nname = "a"\nrunning = 1\n\n[[channel]]\nrunnin = true\n'
    assert problems(text) == [
        "channels.toml:3: running: expected true or false, got an integer",
        "channels.toml:5: name: missing: every [[channel]] needs a name",
        "channels.toml:6: runnin: unknown key (did you mean running?)",
    ]


def test_a_table_given_in_a_channel_replaces_the_default_whole_so_it_must_be_complete() -> None:
    text = GOOD + '\n[[channel]]\nname = "room-3"\ndestination_catchup = { bucket = "other" }\n'
    assert problems(text) == [
        "channels.toml:24: destination_catchup: missing access_key, endpoint, secret_key, region"
    ]


def test_rules_of_a_channel_are_checked_before_anything_is_sent() -> None:
    assert problems('[[channel]]\nname = "a"\ncatchup = true\n') == [
        "channels.toml:3: catchup: catchup = true needs a destination_catchup"
    ]
    assert problems('[[channel]]\nname = "  "\n') == ["channels.toml:2: name: must not be empty"]
    assert problems('[[channel]]\nname = "a"\ntranscode_profile = []\n') == [
        "channels.toml:3: transcode_profile: expected at least one transcode profile id"
    ]
    assert problems("[defaults]\nstop_timeout = 5\n") == ["channels.toml: no [[channel]] tables: nothing to apply"]
    assert problems('[defaults]\nname = "x"\n[[channel]]\nname = "a"\n')[0].startswith(
        "channels.toml:2: defaults.name: unknown key"
    )
    assert problems('channel = "x"\n') == ["channels.toml:1: channel: expected [[channel]] tables"]


def test_text_that_is_not_toml_says_where() -> None:
    assert problems('[[channel]]\nname = "a\n') == [
        "channels.toml: not valid TOML: Illegal character '\\n' (at line 2, column 10)"
    ]
