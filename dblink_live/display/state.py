"""ViewerState: what the viewer shows and why, without Qt (follow, pause, play, shown version).

The window keeps one and asks it before touching widgets; the rules live here, where they are
tested without a display (``tests/test_viewer_state.py``):

- it can *follow* the live results only while it has a live session that has not ended;
  following stops playback and asks for the newest results to be drawn at once;
- it can *play* a recording only when it has one and is not following;
- a live result is drawn only when its version is newer than the one on screen; the versions
  produced in between are counted as skipped (``skipped_versions``);
- when the session ends, following stops for good (the recording is then scrubbed).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ViewerState"]


@dataclass
class ViewerState:
    """The viewer's display state (see the module docstring).

    Attributes
    ----------
    has_session : bool
        A live session (pipeline) is attached.
    session_done : bool
        That session has ended (finished or failed).
    follow : bool
        The panels follow the newest live results.
    playing : bool
        The recording is being played back.
    shown_version : int
        ``LiveResults.version`` on screen; -1 for a recording frame or nothing.
    skipped_versions : int
        Live versions never drawn because a newer one was drawn first.
    """

    has_session: bool = False
    session_done: bool = False
    follow: bool = False
    playing: bool = False
    shown_version: int = -1
    skipped_versions: int = 0

    @classmethod
    def for_session(cls, has_session: bool) -> ViewerState:
        """The state of a new window: following when it has a live session."""
        return cls(has_session=has_session, follow=has_session)

    @property
    def can_follow(self) -> bool:
        return self.has_session and not self.session_done

    def set_follow(self, follow: bool) -> bool:
        """Follow (True) or pause (False); returns whether it now follows (only while
        :attr:`can_follow`). Following stops playback and asks for a redraw."""
        self.follow = bool(follow) and self.can_follow
        if self.follow:
            self.playing = False
            self.redraw()
        return self.follow

    def can_play(self, has_recording: bool) -> bool:
        return has_recording and not self.follow

    def set_playing(self, playing: bool, has_recording: bool) -> bool:
        """Play (True) or stop playback; returns whether it now plays."""
        self.playing = bool(playing) and self.can_play(has_recording)
        return self.playing

    def accept(self, version: int) -> bool:
        """True when live result ``version`` is to be drawn (newer than the one on screen);
        it then counts as shown, and the versions skipped since are counted."""
        if version <= self.shown_version:
            return False
        if self.shown_version >= 0:
            self.skipped_versions += version - self.shown_version - 1
        self.shown_version = int(version)
        return True

    def redraw(self) -> None:
        """The next live result is drawn whatever its version (the render window changed,
        or following resumed)."""
        self.shown_version = -1

    def show_recording_frame(self) -> None:
        """A recording frame is on screen (no live version)."""
        self.shown_version = -1

    def end_session(self) -> None:
        """The live session ended: following stops for good."""
        self.session_done = True
        self.follow = False
