"""Pluggable face detectors for video frames: OpenCV Haar cascades (default) and YuNet (user-supplied ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from classemo.data.faces import FaceBox


HAAR_WINDOW = 24  # side of the frontal cascade's detection window, in pixels


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with `detect(frame_bgr) -> list[FaceBox]` can drive the video pipeline."""

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        ...


class HaarDetector:
    """OpenCV's bundled Haar cascades, tuned for classroom scales: faces from `min_size_frac` of the frame's shorter
    side upwards.

    Wraps `classemo.data.faces.HaarFaceDetector`. The cascade's window is 24 px, so the frame is downscaled just
    enough that the smallest wanted face becomes ~24 px: detection cost then depends on the relative face size, not
    on the video's resolution, and small faces are never shrunk below what the cascade can see. The padded second
    pass that helps tight face photos is off, because on the many frames of a video with nobody in view it doubles
    the cost and only adds false faces.

    Args:
        min_size_frac: smallest face side as a fraction of the frame's shorter side. 0.04 keeps the back row of a
            wide classroom shot (faces ~10% of the height) with margin; lower finds smaller faces, more slowly.
        scale_factor: image pyramid step; 1.1 finds the small faces that 1.3 skips.
        min_neighbors: detection votes needed; higher removes false positives and costs recall.
        profile: also run the profile cascade on the frame and its mirror (about triples detection time).
    """

    def __init__(self, *, min_size_frac: float = 0.04, scale_factor: float = 1.1, min_neighbors: int = 4,
                 profile: bool = False) -> None:
        if not 0 < min_size_frac < 1:
            raise ValueError(f"min_size_frac must be in (0, 1), got {min_size_frac}")
        self.min_size_frac = min_size_frac
        self.kwargs = dict(scale_factor=scale_factor, min_neighbors=min_neighbors, use_profile=profile,
                           pad_fraction=0.0)
        self._by_shape: dict[tuple[int, int], object] = {}

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        from classemo.data.faces import HaarFaceDetector

        shape = frame_bgr.shape[:2]
        if shape not in self._by_shape:
            min_face = self.min_size_frac * min(shape)
            scale = min(1.0, HAAR_WINDOW / min_face)
            self._by_shape[shape] = HaarFaceDetector(min_size=max(HAAR_WINDOW, round(min_face)),
                                                     max_side=int(np.ceil(max(shape) * scale)), **self.kwargs)
        return self._by_shape[shape].detect(frame_bgr)


class YuNetDetector:
    """OpenCV's YuNet CNN face detector (`cv2.FaceDetectorYN`) from an ONNX file the user supplies.

    Args:
        model_path: path to a YuNet ONNX file (e.g. face_detection_yunet_2023mar.onnx from the OpenCV zoo).
        score_threshold: minimum face confidence.
        nms_threshold: YuNet's own NMS IoU threshold.
    """

    def __init__(self, model_path: str | Path, *, score_threshold: float = 0.7, nms_threshold: float = 0.3) -> None:
        import cv2

        p = Path(model_path)
        if not p.is_file():
            raise FileNotFoundError(f"YuNet model not found: {p} (give the path to its .onnx file)")
        try:
            self._net = cv2.FaceDetectorYN.create(str(p), "", (320, 320), score_threshold, nms_threshold)
        except cv2.error as e:
            raise ValueError(f"{p}: OpenCV could not load it as a YuNet ONNX model ({e.msg or e})") from None
        self._size: tuple[int, int] | None = None

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        h, w = frame_bgr.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._net.detect(frame_bgr)
        if faces is None:
            return []
        # Row layout: x, y, w, h, 5 landmark pairs, score.
        return [FaceBox(int(f[0]), int(f[1]), int(f[2]), int(f[3]), float(f[-1])) for f in faces]


def make_detector(name: str = "haar", **kwargs: object) -> FaceDetector:
    """Build a detector by name: "haar" (default), "haar-profile" (frontal + profile) or "yunet" (needs model_path).

    Raises:
        ValueError: for an unknown name.
    """
    key = name.lower()
    if key == "haar":
        return HaarDetector(**kwargs)  # type: ignore[arg-type]
    if key == "haar-profile":
        return HaarDetector(profile=True, **kwargs)  # type: ignore[arg-type]
    if key == "yunet":
        if "model_path" not in kwargs:
            raise ValueError("the yunet detector needs model_path=<path to the YuNet .onnx file>")
        return YuNetDetector(**kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown face detector {name!r}; choose haar, haar-profile or yunet")
