"""Face detectors: YuNet (the default; its ONNX ships in the package) and OpenCV's Haar cascades (selectable).

Both take a BGR uint8 frame and return `FaceBox`es; YuNet's carry five landmarks, which `FacePath` aligns on.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from classemo.faces.box import FaceBox


HAAR_WINDOW = 24  # side of the frontal cascade's detection window, in pixels


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with `detect(frame_bgr) -> list[FaceBox]` can drive the video pipeline."""

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        ...


class HaarDetector:
    """OpenCV's bundled Haar cascades for video frames, tuned for classroom scales: faces from `min_size_frac` of the
    frame's shorter side upwards.

    Wraps `classemo.faces.haar.HaarFaceDetector`. The cascade's window is 24 px, so the frame is downscaled just
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
        from classemo.faces.haar import HaarFaceDetector

        shape = frame_bgr.shape[:2]
        if shape not in self._by_shape:
            min_face = self.min_size_frac * min(shape)
            scale = min(1.0, HAAR_WINDOW / min_face)
            self._by_shape[shape] = HaarFaceDetector(min_size=max(HAAR_WINDOW, round(min_face)),
                                                     max_side=int(np.ceil(max(shape) * scale)), **self.kwargs)
        return self._by_shape[shape].detect(frame_bgr)


YUNET_FILE = "yunet_n_640_640.onnx"
YUNET_SHA256 = "25a606a145a5b6d7271ae138fbd00eba91dad8b83222ae3f2c7ecd0f4a7b0e31"
DETECTOR_NAMES: tuple[str, ...] = ("yunet", "haar", "haar-profile")


def packaged_yunet_path() -> Path:
    """The YuNet-n ONNX file installed with the package (Apache-2.0; see classemo/faces/assets/NOTICE.md)."""
    return Path(str(resources.files("classemo.faces") / "assets" / YUNET_FILE))


class YuNetDetector:
    """OpenCV's YuNet CNN face detector (`cv2.FaceDetectorYN`): boxes plus five landmarks per face.

    The frame is shrunk (area averaging) so that its longer side is at most `max_side` before detection, and the
    boxes and landmarks are scaled back: YuNet-n was trained at 640 px, its cost grows with the pixel count, and a
    classroom's faces stay well above its smallest face (about 10 px) at that size. Crops are always cut from the
    full-resolution frame. Raise `max_side` for wide shots where faces are under ~2% of the frame's width.

    Args:
        model_path: a YuNet ONNX file; None uses the one shipped in the package.
        score_threshold: minimum face confidence.
        nms_threshold: YuNet's own NMS IoU threshold.
        max_side: longest side the frame is shrunk to before detection (0: never shrink).

    Raises:
        FileNotFoundError: the model file does not exist.
        ValueError: OpenCV cannot load the file as a YuNet model.
    """

    def __init__(self, model_path: str | Path | None = None, *, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, max_side: int = 640) -> None:
        import cv2

        p = Path(model_path) if model_path else packaged_yunet_path()
        if not p.is_file():
            raise FileNotFoundError(f"YuNet model not found: {p} (give the path to its .onnx file)")
        if not 0 < score_threshold < 1 or max_side < 0:
            raise ValueError(f"need 0 < score_threshold < 1 and max_side >= 0, got {score_threshold}, {max_side}")
        try:
            self._net = cv2.FaceDetectorYN.create(str(p), "", (320, 320), score_threshold, nms_threshold)
        except cv2.error as e:
            raise ValueError(f"{p}: OpenCV could not load it as a YuNet ONNX model ({e.msg or e})") from None
        self.model_path = p
        self.max_side = max_side
        self._size: tuple[int, int] | None = None

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        """Faces in a (H, W, 3) BGR uint8 frame, largest first."""
        import cv2

        h, w = frame_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(h, w)) if self.max_side else 1.0
        image = frame_bgr
        if scale < 1.0:
            image = cv2.resize(frame_bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            scale_x, scale_y = image.shape[1] / w, image.shape[0] / h
        else:
            scale_x = scale_y = 1.0
        size = (image.shape[1], image.shape[0])
        if self._size != size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(image)
        if faces is None:
            return []
        boxes = []
        for f in faces:  # x, y, w, h, five landmark pairs, score
            f = f.astype(np.float64)
            x0, y0 = max(0.0, f[0] / scale_x), max(0.0, f[1] / scale_y)
            x1, y1 = min(float(w), (f[0] + f[2]) / scale_x), min(float(h), (f[1] + f[3]) / scale_y)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            marks = tuple((float(f[4 + 2 * k] / scale_x), float(f[5 + 2 * k] / scale_y)) for k in range(5))
            boxes.append(FaceBox(round(x0), round(y0), round(x1 - x0), round(y1 - y0), float(f[14]), marks))
        return sorted(boxes, key=lambda b: b.area, reverse=True)


def make_detector(name: str = "yunet", **kwargs: object) -> FaceDetector:
    """Build a detector by name: "yunet" (default; `model_path` for a user's own ONNX), "haar" or "haar-profile"
    (frontal + profile cascades).

    Raises:
        ValueError: for an unknown name.
    """
    key = name.lower()
    if key == "yunet":
        return YuNetDetector(**kwargs)  # type: ignore[arg-type]
    if key == "haar":
        return HaarDetector(**kwargs)  # type: ignore[arg-type]
    if key == "haar-profile":
        return HaarDetector(profile=True, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
