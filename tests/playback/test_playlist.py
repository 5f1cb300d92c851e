"""Reading playlists with m3u8: masters, media playlists, garbage, names, ages. Pure: no sockets."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_async.playback import (
    MediaPlaylist,
    NotAPlaylist,
    Variant,
    modified_age,
    parse_playlist,
    program_age,
    rendition_names,
)

# As ffmpeg writes them with -var_stream_map "v:0,name:1080p ..." -master_pl_name master.m3u8.
MASTER = b"""#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=5500000,RESOLUTION=1920x1080,CODECS="avc1.640028"
1080p/index.m3u8

#EXT-X-STREAM-INF:BANDWIDTH=3300000,RESOLUTION=1280x720,CODECS="avc1.64001f"
720p/index.m3u8

#EXT-X-STREAM-INF:BANDWIDTH=1100000,RESOLUTION=854x480,CODECS="avc1.64001e"
480p/index.m3u8
"""
MEDIA = b"""#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:41
#EXTINF:1.000000,
seg_41.ts
#EXTINF:1.000000,
seg_42.ts
#EXTINF:0.960000,
seg_43.ts
"""


def test_a_master_lists_its_renditions_by_folder_with_absolute_urls() -> None:
    variants = parse_playlist(MASTER, "https://cdn.example/manifest/c1/master.m3u8")
    assert variants == [
        Variant(name="1080p", url="https://cdn.example/manifest/c1/1080p/index.m3u8", bandwidth=5500000,
                resolution="1920x1080"),
        Variant(name="720p", url="https://cdn.example/manifest/c1/720p/index.m3u8", bandwidth=3300000,
                resolution="1280x720"),
        Variant(name="480p", url="https://cdn.example/manifest/c1/480p/index.m3u8", bandwidth=1100000,
                resolution="854x480"),
    ]  # fmt: skip


def test_a_master_with_alternative_audio_lists_that_playlist_too() -> None:
    body = MASTER + b'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="en",URI="audio_en.m3u8"\n'
    names = [v.name for v in parse_playlist(body, "https://cdn.example/live/master.m3u8")]  # type: ignore[union-attr]
    assert names == ["1080p", "720p", "480p", "audio_en"]


def test_a_media_playlist_gives_what_the_judge_needs() -> None:
    media = parse_playlist(MEDIA + b"#EXT-X-ENDLIST\n", "https://cdn.example/live/720p/index.m3u8")
    assert media == MediaPlaylist(
        media_sequence=41, newest_segment="seg_43.ts", segments=3, target_duration=1.0, ended=True, newest_end=None
    )
    assert isinstance(parse_playlist(MEDIA, "http://x/a.m3u8"), MediaPlaylist)
    assert not parse_playlist(MEDIA, "http://x/a.m3u8").ended  # type: ignore[union-attr]


def test_program_date_time_gives_when_the_newest_segment_ends() -> None:
    body = MEDIA.replace(b"#EXTINF:1.000000,\nseg_41", b"#EXT-X-PROGRAM-DATE-TIME:2024-07-22T11:00:00.000Z\n"
                                                     b"#EXTINF:1.000000,\nseg_41")  # fmt: skip
    media = parse_playlist(body, "http://x/a.m3u8")
    assert isinstance(media, MediaPlaylist)
    assert media.newest_end == datetime(2024, 7, 22, 11, 0, 2, 960000, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"<html><body>502 Bad Gateway</body></html>",
        b"\xff\xfe\x00#EXTM3U",
        b'{"error": "not found"}',
        b"#EXTM3U\n#EXTINF:1.0,\nseg_1.ts\n",  # no EXT-X-TARGETDURATION
        b"#EXTM3U\n#EXT-X-TARGETDURATION:soon\n",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:0\n",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:-6\n",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:inf\n",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:nan\n",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:86400\n",  # one read a day would hide any freeze
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=lots\nhi.m3u8\n",
    ],
)
def test_anything_but_a_playlist_is_not_a_playlist(body: bytes) -> None:
    with pytest.raises(NotAPlaylist):
        parse_playlist(body, "http://x/a.m3u8")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=500).map(lambda t: ("#EXTM3U\n" + t).encode()))
def test_no_body_makes_the_parser_raise_anything_else(body: bytes) -> None:
    with contextlib.suppress(NotAPlaylist):
        parse_playlist(body, "http://x/a.m3u8")


def test_names_are_the_stem_or_the_folder_and_always_distinct() -> None:
    assert rendition_names(["http://x/live/stream_720p.m3u8"]) == ["stream_720p"]
    assert rendition_names(["http://x/live/720p/index.m3u8"]) == ["720p"]
    assert rendition_names(["http://x/a/low.m3u8", "http://x/b/low.m3u8"]) == ["a", "b"]
    assert rendition_names(["http://x/p/a/low.m3u8", "http://x/q/a/low.m3u8"]) == ["p/a/low", "q/a/low"]
    assert rendition_names(["http://x/a.m3u8?t=1", "http://x/a.m3u8?t=2"]) == ["a", "a~2"]


def test_age_by_last_modified_is_on_the_origins_clock_and_never_more_than_the_truth() -> None:
    now = datetime(2024, 7, 22, 12, 0, 0, tzinfo=timezone.utc)
    lm, date = "Mon, 22 Jul 2024 11:00:00 GMT", "Mon, 22 Jul 2024 11:00:07 GMT"
    # Whole seconds on both sides: 7 s apart by the headers is more than 6 s, and may be less than 7 s.
    assert modified_age(last_modified=lm, date=date, now=now) == 6.0  # our own clock is an hour off: not used
    assert modified_age(last_modified=lm, date=None, now=now) == 3599.0
    assert modified_age(last_modified="Mon, 22 Jul 2024 11:00:00 GMT", date=lm, now=now) == 0.0  # never negative
    assert modified_age(last_modified="yesterday-ish", date=None, now=now) is None
    assert modified_age(last_modified=None, date=date, now=now) is None


def test_age_by_program_date_time_counts_from_the_newest_segments_end() -> None:
    now = datetime(2024, 7, 22, 12, 0, 0, tzinfo=timezone.utc)
    assert program_age(newest_end=now - timedelta(seconds=2.5), date=None, now=now) == 2.5
    assert program_age(newest_end=now, date="Mon, 22 Jul 2024 12:00:04 GMT", now=now) == 4.0
    assert program_age(newest_end=None, date=None, now=now) is None
