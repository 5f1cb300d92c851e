"""``PlaybackJudge``: stalls and resumes from successive reads, without sockets or a clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_async.playback import MASTER, PlaybackDecision, PlaybackJudge, RenditionRead

LADDER = ["1080p", "720p", "480p"]


class Feed:
    """Reads of a ladder of 1-second renditions, each advancing or not as told, fed to a judge at given times."""

    def __init__(self, judge: PlaybackJudge | None = None, names: list[str] = LADDER, target: float = 1.0) -> None:
        self.judge = judge or PlaybackJudge(interval=1.0)
        self.target = target
        self.sequence = dict.fromkeys(names, 100)
        self.judge.master_read(0.0, names=names)
        self.decisions: list[PlaybackDecision] = []

    def read(self, name: str, at: float, *, advance: bool = True, **fields: object) -> PlaybackDecision | None:
        if advance:
            self.sequence[name] += 1
        seq = self.sequence[name]
        values: dict[str, object] = {
            "media_sequence": seq, "newest_segment": f"seg_{seq + 5}.ts", "segments": 6,
            "target_duration": self.target,
        }  # fmt: skip
        values.update(fields)
        decision = self.judge.feed(RenditionRead(name=name, at=at, **values))  # type: ignore[arg-type]
        if decision is not None:
            self.decisions.append(decision)
        return decision

    def round(self, at: float, frozen: frozenset[str] = frozenset(), **fields: object) -> list[PlaybackDecision]:
        """Read every rendition at ``at``; those in ``frozen`` have not moved."""
        made = [self.read(name, at, advance=name not in frozen, **fields) for name in self.sequence]
        return [d for d in made if d is not None]


def test_an_output_that_advances_is_never_stalled() -> None:
    feed = Feed()
    for second in range(60):
        assert feed.round(float(second)) == []
    assert not feed.judge.stalled


def test_a_frozen_rendition_is_stalled_after_three_target_durations_and_not_before() -> None:
    feed = Feed()
    feed.round(0.0)
    frozen = frozenset({"720p"})
    for at in (1.0, 2.0, 2.9):
        assert feed.round(at, frozen) == []
    [stall] = feed.round(3.0, frozen)
    assert (stall.kind, stall.renditions, stall.reason, stall.at) == ("stalled", ("720p",), "stale", 3.0)
    assert stall.transition_kind == "playback_stalled"
    assert feed.judge.stalled


def test_the_threshold_follows_each_renditions_target_duration_or_stall_after() -> None:
    feed = Feed(target=4.0)
    feed.round(0.0)
    assert feed.judge.threshold("720p") == 12.0
    assert feed.round(11.0, frozenset({"720p"})) == []
    assert [d.kind for d in feed.round(12.0, frozenset({"720p"}))] == ["stalled"]

    quick = Feed(PlaybackJudge(interval=1.0, stall_after=1.5), target=6.0)
    quick.round(0.0)
    assert quick.round(1.4, frozenset({"480p"})) == []
    assert [d.renditions for d in quick.round(1.5, frozenset({"480p"}))] == [("480p",)]


def test_decisions_alternate_a_second_rendition_stalling_adds_no_decision_and_the_resume_names_both() -> None:
    feed = Feed()
    feed.round(0.0)
    feed.read("720p", 1.0, advance=False)
    feed.read("480p", 2.0)
    assert feed.read("720p", 3.0, advance=False) is not None  # 720p stalls
    feed.read("480p", 3.0, advance=False)
    for at in (4.0, 5.0, 6.0):
        assert feed.read("480p", at, advance=False) is None  # stalled too by now, but the stall is already out
    assert feed.read("720p", 6.5) is None  # 720p moves again; 480p has not
    resume = feed.read("480p", 7.0)
    assert resume is not None
    assert (resume.kind, resume.renditions, resume.reason) == ("resumed", ("720p", "480p"), "advancing")
    assert not feed.judge.stalled
    assert feed.read("720p", 11.0, advance=False) is not None  # the next stall is a new decision


def test_a_stall_names_every_rendition_stalled_at_that_moment_with_their_reasons() -> None:
    judge = PlaybackJudge(interval=1.0)
    judge.master_read(0.0, names=["1080p", "720p"])
    for at in (0.0, 1.0, 2.0, 3.0):  # failing from the start: no target duration known, so 3 x 6 s for now
        assert judge.feed(RenditionRead(name="1080p", at=at, error="HTTP 404")) is None
    # The first read of 720p says its playlist is 10 s old, and makes the target duration 1 s: both are stalled.
    stall = judge.feed(RenditionRead(name="720p", at=3.0, media_sequence=5, newest_segment="s5.ts",
                                     target_duration=1.0, age=10.0))  # fmt: skip
    assert stall is not None and stall.renditions == ("1080p", "720p") and stall.reason == "http 404, stale"


def test_reads_made_together_are_decided_once_and_the_stall_names_them_all() -> None:
    feed = Feed()
    feed.round(0.0)
    same = [RenditionRead(name=n, at=3.0 + i / 100, media_sequence=101, newest_segment="seg_106.ts",
                          target_duration=1.0) for i, n in enumerate(LADDER)]  # fmt: skip
    stall = feed.judge.feed_all(same)
    assert stall is not None and stall.renditions == tuple(LADDER) and stall.at == 3.02
    assert feed.judge.feed_all([]) is None


def test_a_media_sequence_that_goes_back_is_a_packager_restart_an_advance() -> None:
    feed = Feed()
    feed.round(0.0)
    for at in (1.0, 2.0, 3.0):
        feed.round(at, frozenset(LADDER))
    assert [d.kind for d in feed.decisions] == ["stalled"]
    feed.sequence = dict.fromkeys(LADDER, -1)  # a fresh packager counts from 0 again
    feed.round(4.0)
    assert [d.kind for d in feed.decisions] == ["stalled", "resumed"]
    assert feed.decisions[-1].renditions == tuple(LADDER)


def test_the_same_sequence_with_a_new_newest_segment_is_an_advance() -> None:
    feed = Feed()
    feed.round(0.0)
    for at in (1.0, 2.0, 3.0, 4.0):
        # The window grows under one media sequence (a playlist that does not slide): each newest is new.
        assert feed.read("720p", at, advance=False, newest_segment=f"seg_{at}.ts") is None


def test_endlist_is_not_a_stall() -> None:
    feed = Feed()
    feed.round(0.0, ended=True)
    for second in range(1, 30):
        assert feed.round(float(second), frozenset(LADDER), ended=True) == []
    assert feed.judge.stalled_now() == {}


def test_an_output_that_ends_while_stalled_does_not_resume_and_a_new_one_does() -> None:
    feed = Feed()
    feed.round(0.0)
    feed.round(3.0, frozenset(LADDER))
    assert [d.kind for d in feed.decisions] == ["stalled"]
    feed.round(4.0, frozenset(LADDER), ended=True)  # the session is over: not a recovery
    feed.round(9.0, frozenset(LADDER), ended=True)
    assert [d.kind for d in feed.decisions] == ["stalled"]
    feed.round(10.0)  # the playlist goes on (a new session on the same URL)
    assert [d.kind for d in feed.decisions] == ["stalled", "resumed"]


def test_a_rendition_that_ends_while_the_others_play_resumes_the_output() -> None:
    feed = Feed()
    feed.round(0.0)
    feed.round(3.0, frozenset({"720p"}))
    feed.read("720p", 4.0, advance=False, ended=True)
    assert [d.kind for d in feed.decisions] == ["stalled", "resumed"]


def test_failing_for_the_threshold_is_a_stall_whose_reason_is_the_error() -> None:
    feed = Feed()
    feed.round(0.0)
    fail = {"media_sequence": None, "newest_segment": None, "error": "HTTP 503"}
    assert feed.read("480p", 1.0, advance=False, **fail) is None
    assert feed.read("480p", 2.0, advance=False, **fail) is None
    stall = feed.read("480p", 3.0, advance=False, **fail)
    assert stall is not None and stall.renditions == ("480p",) and stall.reason == "http 503"
    # Back with the very playlist it had before failing: still not advancing.
    assert feed.read("480p", 4.0, advance=False) is None
    assert feed.judge.stalled_now() == {"480p": "stale"}
    assert feed.read("480p", 5.0) is not None  # advancing again


def test_a_first_look_at_an_old_playlist_is_a_stall_at_once() -> None:
    feed = Feed()
    stall = feed.read("720p", 0.5, advance=False, age=40.0)
    assert stall is not None and stall.renditions == ("720p",)
    fresh = Feed()
    assert fresh.read("720p", 0.5, advance=False, age=0.8) is None
    assert fresh.read("720p", 2.6, advance=False) is None  # 2.6 - (0.5 - 0.8) < 3
    assert fresh.read("720p", 2.7, advance=False) is not None


def test_each_rendition_is_due_once_per_the_larger_of_interval_and_target_duration() -> None:
    judge = PlaybackJudge(interval=2.0)
    assert judge.due(0.0) == [MASTER]
    judge.master_read(0.0, names=LADDER)
    assert judge.due(0.0) == LADDER
    feed = Feed(judge, target=1.0)
    feed.round(0.1)
    assert judge.next_read_at("720p") == pytest.approx(2.1)  # interval 2 s > target 1 s
    assert judge.due(2.0) == [] and judge.due(2.1) == LADDER
    slow = Feed(PlaybackJudge(interval=2.0), target=6.0)
    slow.round(0.0)
    assert slow.judge.next_due() == 6.0  # target 6 s > interval 2 s


def test_the_master_is_read_again_after_a_404_at_most_once_per_interval() -> None:
    feed = Feed(PlaybackJudge(interval=2.0))
    feed.round(0.0)
    assert MASTER not in feed.judge.due(100.0)  # read once; no reason to read it again
    feed.read("720p", 1.0, advance=False, media_sequence=None, newest_segment=None, error="HTTP 404")
    assert MASTER not in feed.judge.due(1.9)
    assert feed.judge.due(2.0)[0] == MASTER
    feed.judge.master_read(2.5, names=["1080p", "720p-v2", "480p"])  # 720p moved
    assert feed.judge.renditions == ["1080p", "720p-v2", "480p"]
    assert MASTER not in feed.judge.due(100.0)
    assert "720p-v2" in feed.judge.due(2.5) and feed.judge.next_read_at("720p-v2") == 2.5  # new: due at once


def test_an_unreadable_master_is_judged_as_a_rendition_and_read_every_interval() -> None:
    judge = PlaybackJudge(interval=2.0, stall_after=5.0)
    decisions = [judge.master_read(at, error="unreachable") for at in (0.0, 2.0, 4.0, 6.0)]
    assert [d.renditions if d else None for d in decisions] == [None, None, None, (MASTER,)]
    assert decisions[-1] is not None and decisions[-1].reason == "unreachable"
    assert judge.due(7.9) == [] and judge.due(8.0) == [MASTER]
    assert judge.master_read(8.0, names=LADDER) is None  # readable again: the renditions are read before a resume
    feed = Feed.__new__(Feed)
    feed.judge, feed.target, feed.decisions = judge, 1.0, []
    feed.sequence = dict.fromkeys(LADDER, 0)
    [resume] = feed.round(8.2)
    assert resume.kind == "resumed" and resume.renditions == (MASTER,)


def test_bad_settings_are_refused_at_once() -> None:
    for bad in ({"stall_after": 0}, {"stall_after": -1.0}, {"interval": 0}, {"interval": float("nan")}):
        with pytest.raises(ValueError):
            PlaybackJudge(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PlaybackJudge().master_read(0.0)


# -- properties -------------------------------------------------------------------------------------------------

ACTIONS = ("advance", "same", "restart", "error", "end")


@dataclass
class Model:
    """An independent account of what each rendition did: when it last advanced, whether it is over."""

    threshold: dict[str, float]
    changed: dict[str, float] = field(default_factory=dict)
    last: dict[str, tuple[int | None, str | None, bool]] = field(default_factory=dict)
    ended: dict[str, bool] = field(default_factory=dict)
    read_at: dict[str, float] = field(default_factory=dict)

    def note(self, read: RenditionRead) -> None:
        self.read_at[read.name] = read.at
        if read.error is not None:
            self.changed.setdefault(read.name, read.at)
            return
        state = (read.media_sequence, read.newest_segment, read.ended)
        before = self.last.get(read.name)
        if before is None:
            self.changed.setdefault(read.name, read.at)
        elif before[:2] != state[:2] or (before[2] and not read.ended):
            self.changed[read.name] = read.at
        self.last[read.name] = state
        self.ended[read.name] = read.ended

    def stalled(self) -> set[str]:
        return {
            n for n, t in self.changed.items()
            if not self.ended.get(n, False) and self.read_at[n] - t >= self.threshold[n]
        }  # fmt: skip


scenario = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=4.0, allow_nan=False),  # seconds since the previous read
        st.integers(min_value=0, max_value=2),  # which rendition
        st.sampled_from(ACTIONS),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    scenario,
    st.lists(st.sampled_from([1.0, 2.0, 6.0]), min_size=3, max_size=3),
    st.one_of(st.none(), st.floats(min_value=0.5, max_value=10.0)),
)
def test_decisions_alternate_starting_with_a_stall_never_early_never_for_an_ended_rendition_never_late(
    steps: list[tuple[float, int, str]], targets: list[float], stall_after: float | None
) -> None:
    judge = PlaybackJudge(interval=1.0, stall_after=stall_after)
    names = LADDER
    judge.master_read(0.0, names=names)
    threshold = {n: stall_after if stall_after is not None else 3 * t for n, t in zip(names, targets, strict=True)}
    model = Model(threshold)
    seq = dict.fromkeys(names, 10)
    now, kinds, open_stall = 0.0, [], False
    # Every rendition's first read succeeds, so each one's target duration (and threshold) is known.
    first = [(0.0, i, "same") for i in range(3)]
    for dt, index, action in first + steps:
        now += dt
        name = names[index]
        if action == "advance":
            seq[name] += 1
        elif action == "restart":
            seq[name] = 0 if seq[name] != 0 else 1
        if action == "error":
            read = RenditionRead(name=name, at=now, error="HTTP 500")
        else:
            read = RenditionRead(
                name=name, at=now, media_sequence=seq[name], newest_segment=f"s{seq[name]}.ts", segments=3,
                target_duration=targets[index], ended=action == "end",
            )  # fmt: skip
        model.note(read)
        decision = judge.feed(read)
        stalled = model.stalled()
        if decision is not None:
            kinds.append(decision.kind)
            if decision.kind == "stalled":
                # Never early: every rendition named has not advanced for its threshold; none of them is over.
                assert set(decision.renditions) == stalled
            else:
                assert stalled == set() and not all(model.ended.get(n, False) for n in names)
            open_stall = decision.kind == "stalled"
        elif not open_stall:
            assert stalled == set(), "never late: a stall is decided on the first read that shows it"
        elif not stalled and not all(model.ended.get(n, False) for n in names):
            raise AssertionError("never late: the resume comes on the first read with nothing stalled")
    assert kinds == ["stalled", "resumed"] * (len(kinds) // 2) + ["stalled"] * (len(kinds) % 2)
    assert judge.stalled == open_stall


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=3.0), min_size=1, max_size=60), st.sampled_from([1.0, 2.0, 6.0]))
def test_reads_are_never_due_more_often_than_the_larger_of_interval_and_target(
    gaps: list[float], interval: float
) -> None:
    judge = PlaybackJudge(interval=interval)
    judge.master_read(0.0, names=["720p"])
    now, reads = 0.0, []
    for gap in gaps:
        now += gap
        if "720p" in judge.due(now):
            judge.feed(RenditionRead(name="720p", at=now, media_sequence=int(now), newest_segment="x",
                                     target_duration=2.0))  # fmt: skip
            reads.append(now)
    spacing = max(interval, 2.0)
    assert all(b - a >= spacing - 1e-9 for a, b in itertools.pairwise(reads))
