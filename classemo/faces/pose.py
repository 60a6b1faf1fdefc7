"""Head pose per face (yaw, pitch, roll in degrees) from 68 landmarks and a generic 3D face, through `cv2.solvePnP`.

YuNet's five points carry yaw but not pitch (on hand-read classroom faces the nose sits at the same height between
eyes and mouth whether the face is frontal or bowed over a desk), so pose comes from the 68-point landmark net of
`classemo.faces.landmarks`, whose jaw line and chin move with the head. The camera is modelled as a pinhole with the
focal length of the frame's longer side and the principal point at the frame's centre: a face off to one side that
looks at the camera has the yaw that points it at the camera, which is what "facing the front" means for a teacher
whose camera stands at the front.

Angles, in the camera's frame: yaw > 0 when the face turns towards the image's right, pitch > 0 when it tilts up
(looking down is negative), roll > 0 when the head leans clockwise in the image. A face the net or solvePnP cannot
place gets NaN, never an exception: `classemo.faces.reading` then calls it unreadable.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from classemo.faces.box import FaceBox

# A generic head in millimetre-like units, in OpenCV's camera convention (x right, y down, z away from the camera),
# facing the camera with the nose tip at the origin. iBUG 68-point indices; the points a small, blurred face still
# places well: the nose, the outer eye corners, the mouth corners and the chin.
MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0),  # 30 nose tip
    (0.0, 330.0, 65.0),  # 8 chin
    (-225.0, -170.0, 135.0),  # 36 outer corner of the eye on the image's left
    (225.0, -170.0, 135.0),  # 45 outer corner of the eye on the image's right
    (-150.0, 150.0, 125.0),  # 48 mouth corner on the image's left
    (150.0, 150.0, 125.0),  # 54 mouth corner on the image's right
    (0.0, -170.0, 100.0),  # 27 top of the nose bridge, between the eyes
    (0.0, 75.0, 85.0),  # 33 base of the nose
], dtype=np.float64)
POSE_LANDMARKS = (30, 8, 36, 45, 48, 54, 27, 33)


def camera_matrix(frame_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) pinhole intrinsics of a frame (width, height): focal = the longer side, centre = the frame's centre."""
    w, h = frame_size
    f = float(max(w, h))
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])


def rotation_to_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees of a (3, 3) head rotation, as `R = Rz(roll) Ry(yaw) Rx(pitch)` (module docstring
    for the signs)."""
    r = rotation
    pitch_x = np.degrees(np.arctan2(r[2, 1], r[2, 2]))  # about x; y points down, so a bowed head turns positive
    yaw_y = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    roll_z = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    # A face is seen from the front, so its x-rotation is near 0 rather than near +-180: fold the ambiguity.
    pitch_x = (pitch_x + 180.0) % 360.0 - 180.0
    return float(-yaw_y), float(-pitch_x), float(roll_z)


def ray_frame(position: np.ndarray) -> np.ndarray:
    """(3, 3) rotation whose z axis points from the camera to `position`: a head whose rotation relative to it is the
    identity looks straight at the camera, wherever in the frame it is."""
    z = position / np.linalg.norm(position)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def head_pose(landmarks: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(3,) yaw, pitch, roll in degrees of one face's (68, 2) landmarks in frame pixels, relative to the line from
    the camera to the face (0, 0, 0: looking at the camera); NaN where it cannot be told
    (missing or non-finite points, a degenerate face, solvePnP failing or returning nonsense)."""
    out = np.full(3, np.nan)
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        return out
    image_points = pts[list(POSE_LANDMARKS)]
    if not np.isfinite(image_points).all() or np.ptp(image_points, axis=0).min() < 2.0:
        return out  # a face a couple of pixels across has no pose to find
    try:
        ok, rvec, tvec = cv2.solvePnP(MODEL_POINTS, image_points, camera_matrix(frame_size), None,
                                      flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        return out
    if not ok or not (np.isfinite(rvec).all() and np.isfinite(tvec).all()) or tvec[2, 0] <= 0:
        return out  # behind the camera: a mirror solution, not a head
    rotation, _ = cv2.Rodrigues(rvec)
    out[:] = rotation_to_angles(ray_frame(tvec[:, 0]).T @ rotation)
    return out


class PoseReader:
    """Landmarks, then head pose, for every face of a frame in one batched forward of the landmark net."""

    def __init__(self) -> None:
        from classemo.faces.landmarks import LandmarkReader

        self.landmarks = LandmarkReader()

    def __call__(self, frame_bgr: np.ndarray, boxes: Sequence[FaceBox]) -> np.ndarray:
        """(N, 3) yaw, pitch, roll in degrees, one row per box (NaN where a face has no pose)."""
        if not len(boxes):
            return np.zeros((0, 3))
        h, w = frame_bgr.shape[:2]
        marks = self.landmarks(frame_bgr, boxes)  # (N, 68, 2)
        return np.stack([head_pose(m, (w, h)) for m in marks])
