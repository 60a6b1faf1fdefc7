"""Where a face looks (facing the front, looking down, turned away) and whether its expression can be read at all.

A classroom is not a frontal face: most faces bow over desks or turn to a neighbour, and a face the model cannot see
well is not sad, it is unread. These rules turn a face's pose, size, detector score and sharpness into an attention
state and a readability, per frame and per window; docs/analytics.md explains each threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

ATTENTION_STATES = ("front", "down", "away")  # plus "unknown" where the pose could not be told
STATE_NAMES = {"front": "facing the front", "down": "looking down", "away": "turned away", "unknown": "pose unknown"}
FACE_COLUMNS = ("score", "yaw", "pitch", "roll", "sharpness")  # per-face values the face path adds to each box


@dataclass(frozen=True)
class ReadingConfig:
    """Thresholds of the attention state and of readability (docs/analytics.md, "Attention and readability")."""

    away_yaw_deg: float = 30.0  # turned away: the head turned further than this from the camera, either way
    down_pitch_deg: float = 25.0  # looking down: the head bowed further than this below the line to the camera
    min_face_px: float = 24.0  # unreadable: a face box side under this many pixels (the model's input is 48 px)
    min_score: float = 0.7  # unreadable: a detector score under this (YuNet keeps faces from 0.6)
    min_sharpness: float = 15.0  # unreadable: variance of the Laplacian of the face at 64 px under this (blur)
    read_down: bool = True  # read faces looking down, at the analytics' stricter down_min_confidence (docs)

    def __post_init__(self) -> None:
        if not (0 < self.away_yaw_deg < 90 and 0 < self.down_pitch_deg < 90):
            raise ValueError(f"away_yaw_deg and down_pitch_deg must be in (0, 90) degrees, got {self}")
        if self.min_face_px < 0 or not 0 <= self.min_score <= 1 or self.min_sharpness < 0:
            raise ValueError(f"need min_face_px >= 0, 0 <= min_score <= 1 and min_sharpness >= 0, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


def face_sharpness(frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian of a face box, resized to 64 px grey: low for a blurred or featureless face; NaN
    for a box with no pixels in the frame. Measured at one size so that big and small faces compare."""
    h, w = frame_bgr.shape[:2]
    x, y, bw, bh = box
    x0, y0, x1, y1 = max(0, int(x)), max(0, int(y)), min(w, int(x + bw)), min(h, int(y + bh))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return float("nan")
    grey = cv2.cvtColor(frame_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA), cv2.CV_64F).var())


def attention_state(yaw: float, pitch: float, cfg: ReadingConfig) -> str:
    """"away", "down" or "front" from a head pose in degrees; "unknown" where the pose is NaN."""
    if not (np.isfinite(yaw) and np.isfinite(pitch)):
        return "unknown"
    if abs(yaw) > cfg.away_yaw_deg:
        return "away"
    if pitch < -cfg.down_pitch_deg:
        return "down"
    return "front"


def unread_reason(state: str, face_px: float, score: float, sharpness: float, cfg: ReadingConfig) -> str:
    """Why a face's expression cannot be read ("" when it can): the first of too small, low detector score,
    blurred, pose unknown, turned away, looking down (unless `read_down`)."""
    if not face_px >= cfg.min_face_px:
        return "too small"
    if not score >= cfg.min_score:
        return "unsure face"
    if not sharpness >= cfg.min_sharpness:
        return "blurred"
    if state == "unknown":
        return "pose unknown"
    if state == "away":
        return "turned away"
    if state == "down" and not cfg.read_down:
        return "looking down"
    return ""


def window_reading(faces: np.ndarray, boxes: np.ndarray, cfg: ReadingConfig) -> dict:
    """One window's pose, attention state and readability from its frames.

    Args:
        faces: (T, 5) per frame `FACE_COLUMNS` (score, yaw, pitch, roll, sharpness).
        boxes: (T, 4) per frame x, y, w, h.
        cfg: thresholds.

    Returns:
        Timeline columns: yaw, pitch, roll (medians over the frames with a pose), attention, face_px, det_score,
        sharpness (medians), readable and unread_reason.
    """
    faces = np.asarray(faces, dtype=float).reshape(-1, len(FACE_COLUMNS))
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)

    def median(x: np.ndarray) -> float:
        x = x[np.isfinite(x)]
        return float(np.median(x)) if len(x) else float("nan")

    yaw, pitch, roll = (median(faces[:, k]) for k in (1, 2, 3))
    face_px, score, sharp = median(boxes[:, 2:4].min(axis=1)), median(faces[:, 0]), median(faces[:, 4])
    state = attention_state(yaw, pitch, cfg)
    reason = unread_reason(state, face_px, score, sharp, cfg)
    return {"yaw": yaw, "pitch": pitch, "roll": roll, "attention": state, "face_px": face_px, "det_score": score,
            "sharpness": sharp, "readable": reason == "", "unread_reason": reason}
