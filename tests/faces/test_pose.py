"""Head pose from 68 landmarks, the attention state and readability: known poses recovered, signs as a person reads
them, and bad input (NaN, degenerate, tiny faces) giving an unknown, unreadable face rather than an exception."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from classemo.faces import FaceBox, FacePath
from classemo.faces.pose import MODEL_POINTS, POSE_LANDMARKS, camera_matrix, head_pose
from classemo.faces.reading import ReadingConfig, attention_state, unread_reason, window_reading
from helpers import MEDIA

SIZE = (640, 480)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The head rotation `head_pose` reads back as (yaw, pitch, roll) for a face on the optical axis."""
    y, p, r = np.radians([-yaw, -pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def landmarks_of(yaw: float, pitch: float, roll: float, distance: float = 3000.0) -> np.ndarray:
    """(68, 2) landmarks whose pose points are the generic head projected at that pose; the rest are filler."""
    rvec, _ = cv2.Rodrigues(rotation(yaw, pitch, roll))
    pts, _ = cv2.projectPoints(MODEL_POINTS, rvec, np.array([0.0, 0.0, distance]), camera_matrix(SIZE), None)
    marks = np.full((68, 2), 320.0)
    marks[list(POSE_LANDMARKS)] = pts[:, 0]
    return marks


@pytest.mark.parametrize("pose", [(0, 0, 0), (25, 0, 0), (-40, 10, 0), (0, -30, 5), (15, -20, -10)])
def test_known_poses_are_recovered(pose: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(head_pose(landmarks_of(*pose), SIZE), pose, atol=1.0)


def test_signs_read_as_a_person_sees_them() -> None:
    right = landmarks_of(30, 0, 0)
    assert right[30, 0] > (right[36, 0] + right[45, 0]) / 2  # turned to the image's right: the nose leads right
    down = landmarks_of(0, -30, 0)
    level = landmarks_of(0, 0, 0)
    # Bowed: the nose tip drops towards the mouth.
    assert (down[48, 1] - down[30, 1]) < (level[48, 1] - level[30, 1])


def test_a_face_off_to_the_side_looking_at_the_camera_faces_the_front() -> None:
    # The same head, turned to look at the camera from the frame's left edge, is frontal relative to the camera.
    position = np.array([-1500.0, 0.0, 3000.0])
    look = -position / np.linalg.norm(position)  # the face's forward axis (-z in the model) points at the camera
    z = -look
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    r = np.stack([x, np.cross(z, x), z], axis=1)
    pts, _ = cv2.projectPoints(MODEL_POINTS, cv2.Rodrigues(r)[0], position, camera_matrix(SIZE), None)
    marks = np.full((68, 2), 320.0)
    marks[list(POSE_LANDMARKS)] = pts[:, 0]
    np.testing.assert_allclose(head_pose(marks, SIZE), [0, 0, 0], atol=1.0)


@pytest.mark.parametrize("bad", [np.full((68, 2), np.nan), np.full((68, 2), 100.0), np.zeros((5, 2))])
def test_landmarks_without_a_pose_give_nan(bad: np.ndarray) -> None:
    assert np.isnan(head_pose(bad, SIZE)).all()


def test_attention_and_readability_rules() -> None:
    cfg = ReadingConfig()
    assert [attention_state(*p, cfg) for p in [(0, 0), (45, 0), (-31, 0), (0, -40), (10, -10), (np.nan, 0)]] == \
        ["front", "away", "away", "down", "front", "unknown"]
    assert unread_reason("front", 60, 0.9, 100, cfg) == ""
    assert unread_reason("front", 12, 0.9, 100, cfg) == "too small"
    assert unread_reason("front", 60, 0.9, 2.0, cfg) == "blurred"
    assert unread_reason("front", 60, 0.9, np.nan, cfg) == "blurred"
    assert unread_reason("away", 60, 0.9, 100, cfg) == "turned away"
    assert unread_reason("down", 60, 0.9, 100, cfg) == ""  # read, at the analytics' stricter confidence
    assert unread_reason("down", 60, 0.9, 100, ReadingConfig(read_down=False)) == "looking down"
    with pytest.raises(ValueError, match="away_yaw_deg"):
        ReadingConfig(away_yaw_deg=120)


def test_a_window_takes_its_frames_medians_and_survives_missing_poses() -> None:
    boxes = np.array([[0, 0, 60, 60]] * 4, dtype=float)
    faces = np.array([[0.9, 40, -5, 0, 80], [0.9, 42, -4, 0, 90], [0.9, np.nan, np.nan, np.nan, 85],
                      [0.9, 38, -6, 0, 70]])
    w = window_reading(faces, boxes, ReadingConfig())
    assert w["attention"] == "away" and w["yaw"] == pytest.approx(40) and not w["readable"]
    lost = window_reading(np.full((4, 5), np.nan), boxes, ReadingConfig())
    assert lost["attention"] == "unknown" and lost["unread_reason"] and not lost["readable"]


def test_the_face_path_describes_faces_and_never_raises_on_tiny_or_empty_ones() -> None:
    image = cv2.imread(str(MEDIA / "single_face.jpg"))
    path = FacePath()
    boxes = path.detect(image)
    described = path.describe(image, boxes)
    assert described.shape == (len(boxes), 5) and np.isfinite(described[0]).all()
    score, yaw, pitch, roll, sharp = described[0]
    assert attention_state(yaw, pitch, ReadingConfig()) == "front" and score > 0.7 and sharp > 15
    assert path.describe(image, []).shape == (0, 5)
    odd = [FaceBox(5, 5, 3, 3, 0.9), FaceBox(image.shape[1] + 10, 0, 20, 20, 0.9)]  # tiny, and off the frame
    out = path.describe(image, odd)
    assert out.shape == (2, 5) and np.isnan(out[1, 1:]).all()
