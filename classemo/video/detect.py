"""Pluggable face detectors for video frames: OpenCV Haar cascades (default) and YuNet (user-supplied ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from classemo.data.faces import FaceBox


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with `detect(frame_bgr) -> list[FaceBox]` can drive the video pipeline."""

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        ...


class HaarDetector:
    """OpenCV's bundled Haar cascades, tuned for classroom scales (faces from ~4% to most of the frame height).

    Wraps `classemo.data.faces.HaarFaceDetector`. Two video-specific choices: the minimum face size follows the
    frame size, and the padded second pass that helps tight face photos is off, because on the many frames of a
    video with nobody in view it doubles the cost and only adds false faces.

    Args:
        min_size_frac: smallest face side as a fraction of the frame's shorter side. Students at the back are small,
            but below ~4% of 360 px the cascade mostly fires on texture.
        scale_factor: image pyramid step; 1.1 finds the small faces that 1.3 skips.
        min_neighbors: detection votes needed; higher removes false positives and costs recall.
        profile: also run the profile cascade on the frame and its mirror (about triples detection time).
        max_side: frames are downscaled to this longest side first (detection cost grows with its square).
    """

    def __init__(self, *, min_size_frac: float = 0.04, scale_factor: float = 1.1, min_neighbors: int = 5,
                 profile: bool = False, max_side: int = 480) -> None:
        self.min_size_frac = min_size_frac
        self.kwargs = dict(scale_factor=scale_factor, min_neighbors=min_neighbors, use_profile=profile,
                           max_side=max_side, pad_fraction=0.0)
        self._by_min_size: dict[int, object] = {}

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        from classemo.data.faces import HaarFaceDetector

        # 24 px is the frontal cascade's own window; asking for less only upsamples noise.
        min_size = max(24, int(round(self.min_size_frac * min(frame_bgr.shape[:2]))))
        if min_size not in self._by_min_size:
            self._by_min_size[min_size] = HaarFaceDetector(min_size=min_size, **self.kwargs)
        return self._by_min_size[min_size].detect(frame_bgr)


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
