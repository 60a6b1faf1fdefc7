"""Excluded seats: a region of the frame is never analysed, on real footage, and bad regions are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classemo.faces import FacePath
from classemo.faces.exclude import FILL, Region, mask_frame, outside, parse_regions
from classemo.faces.box import FaceBox
from classemo.video.stages import FaceObserver
from classemo.video.track import Tracker

CLASSROOM = Path(__file__).resolve().parents[1] / "fixtures" / "media" / "classroom_intel.mp4"
LEFT = Region(0.0, 0.0, 0.2, 1.0)  # the man at the left desk (his face's centre is near x = 0.09)


def test_parse_and_errors() -> None:
    assert parse_regions("0,0,0.25,1") == (Region(0.0, 0.0, 0.25, 1.0),)
    assert parse_regions("0,0,.5,.5; 0.5,0.5,1,1") == (Region(0, 0, 0.5, 0.5), Region(0.5, 0.5, 1, 1))
    assert parse_regions([[0.1, 0.2, 0.3, 0.4]]) == (Region(0.1, 0.2, 0.3, 0.4),)
    assert parse_regions(None) == ()
    with pytest.raises(ValueError, match="four fractions"):
        parse_regions("left quarter")
    with pytest.raises(ValueError, match="0 <= x0 < x1 <= 1"):
        parse_regions("0.5,0,0.2,1")  # empty
    with pytest.raises(ValueError, match="0 <= x0 < x1 <= 1"):
        parse_regions("0,0,1.5,1")  # off the frame
    with pytest.raises(ValueError, match="four numbers"):
        parse_regions([[0, 0, 1]])


def test_mask_and_outside() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    assert mask_frame(frame, ()) is frame
    masked = mask_frame(frame, (Region(0.0, 0.0, 0.25, 0.5),))
    assert (masked[:50, :50] == FILL).all() and (masked[50:, :] == 0).all() and (masked[:, 50:] == 0).all()
    assert (frame == 0).all()  # the decoded frame is not painted over
    boxes = [FaceBox(10, 10, 20, 20), FaceBox(40, 10, 30, 30), FaceBox(150, 60, 20, 20)]
    # centres (20, 20) inside, (55, 25) outside (straddles the edge), (160, 70) outside
    assert outside(boxes, (Region(0.0, 0.0, 0.25, 0.5),), (200, 100)) == boxes[1:]


def observe(face_path: FacePath) -> tuple[FaceObserver, list]:
    """classroom_intel.mp4 at 1 fps through the observer (detect, track, crop; pose on the first frame only)."""
    observer = FaceObserver(CLASSROOM, face_path, Tracker(), fps=1.0, pose_every=1000)
    return observer, list(observer)


def test_an_excluded_seat_on_real_footage() -> None:
    everyone, chunks = observe(FacePath())
    boxes = np.concatenate([c.boxes for c in chunks])
    width = everyone.observation.info.width
    centres = (boxes[:, 0] + boxes[:, 2] / 2) / width
    assert (centres < LEFT.x1).sum() >= 20  # the left seat is occupied in most frames without the exclusion
    excluded, chunks = observe(FacePath(exclude=(LEFT,)))
    boxes = np.concatenate([c.boxes for c in chunks])
    assert len(boxes) and ((boxes[:, 0] + boxes[:, 2] / 2) / width >= LEFT.x1).all()  # no face, no row from it
    assert len(excluded.tracker.tracks) < len(everyone.tracker.tracks)
    assert excluded.observation.face_detections < everyone.observation.face_detections
