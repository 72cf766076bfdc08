"""ViewerState alone (no Qt): the viewer's follow / pause / play rules and version counting."""

from __future__ import annotations

from dblink_live.display.state import ViewerState


def test_a_window_on_a_session_follows_and_one_on_a_recording_does_not() -> None:
    assert ViewerState.for_session(True).follow
    st = ViewerState.for_session(False)
    assert not st.follow and not st.can_follow
    assert st.set_follow(True) is False  # nothing to follow


def test_following_stops_playback_and_asks_for_a_redraw() -> None:
    st = ViewerState.for_session(True)
    st.set_follow(False)
    assert st.set_playing(True, has_recording=True)
    st.accept(7)
    assert st.set_follow(True) and not st.playing and st.shown_version == -1
    assert st.set_playing(True, has_recording=True) is False  # not while following
    assert st.set_playing(True, has_recording=False) is False


def test_only_newer_versions_are_drawn_and_the_ones_in_between_are_counted() -> None:
    st = ViewerState.for_session(True)
    assert st.accept(0) and st.shown_version == 0
    assert not st.accept(0)  # the same results again: nothing to draw
    assert st.accept(5) and st.skipped_versions == 4
    assert not st.accept(3)
    st.redraw()
    assert st.accept(3) and st.skipped_versions == 4  # a redraw skips nothing


def test_an_ended_session_cannot_be_followed_again() -> None:
    st = ViewerState.for_session(True)
    st.end_session()
    assert not st.follow and not st.can_follow
    assert st.set_follow(True) is False
    assert st.set_playing(True, has_recording=True)  # its recording can be played
