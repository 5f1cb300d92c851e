"""Playback health: is a channel's HLS output really advancing? The third dimension beside status and signal.

Layers, bottom up: ``_models`` (reads, decisions, reports) and ``_playlist`` (m3u8 parsing), pure;
``_judge`` (``PlaybackJudge``: reads in, stall and resume decisions out), pure; ``_prober`` (reads through the
credential-free ``PublicReader`` of ``_transport``: ``probe``, ``PlaybackWatch``, ``watch``); ``_namespace``
(``client.playback``).

>>> report = await client.playback.probe(channel_id)
>>> report.state, [(r.name, r.media_sequence, r.age) for r in report.renditions]
('playing', [('1080p', 5120, 0.8), ('720p', 5120, 0.9), ('480p', 5120, 0.7)])
"""

from ._judge import DEFAULT_TARGET_DURATION, STALL_FACTOR, PlaybackJudge
from ._models import (
    MASTER,
    PlaybackDecision,
    PlaybackReport,
    PlaybackState,
    RenditionRead,
    RenditionReport,
    RenditionState,
    to_transition,
)
from ._namespace import Playback, check_target
from ._playlist import (
    MediaPlaylist,
    NotAPlaylist,
    Variant,
    modified_age,
    parse_playlist,
    program_age,
    rendition_names,
)
from ._prober import MasterRead, PlaybackWatch, Prober, check_playlist_url

__all__ = [
    "DEFAULT_TARGET_DURATION",
    "MASTER",
    "STALL_FACTOR",
    "MasterRead",
    "MediaPlaylist",
    "NotAPlaylist",
    "PlaybackDecision",
    "Playback",
    "PlaybackJudge",
    "PlaybackReport",
    "PlaybackState",
    "PlaybackWatch",
    "Prober",
    "RenditionRead",
    "RenditionReport",
    "RenditionState",
    "Variant",
    "check_playlist_url",
    "check_target",
    "modified_age",
    "parse_playlist",
    "program_age",
    "rendition_names",
    "to_transition",
]
