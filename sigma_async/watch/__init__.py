"""Watching sessions and channels: the pure tracker, the poll planners, the loops and the monitor.

``SigmaClient.watch_session``, ``watch_channel``, ``monitor`` and ``wait_for`` are the usual way in; this
package holds what they run.
"""

from ._channel import watch_channel
from ._feed import FeedRefused
from ._kinds import DEFAULT_TABLE, KIND_BY_ACTION, KIND_BY_STATUS, KINDS, KindTable
from ._monitor import Monitor
from ._plan import POLL_MODES, PollMode
from ._reads import is_fatal
from ._session import wait_for, watch_session
from ._tracker import SessionTracker
from ._window import LATE_WINDOW

__all__ = [
    "DEFAULT_TABLE",
    "KINDS",
    "KIND_BY_ACTION",
    "KIND_BY_STATUS",
    "LATE_WINDOW",
    "POLL_MODES",
    "FeedRefused",
    "KindTable",
    "Monitor",
    "PollMode",
    "SessionTracker",
    "is_fatal",
    "wait_for",
    "watch_channel",
    "watch_session",
]
