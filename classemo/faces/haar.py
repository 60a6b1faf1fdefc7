"""Face detection on OpenCV's bundled Haar cascades (no landmarks, so their crops are not aligned).

OpenCV 5 dropped the bundled cascades, hence the `opencv-python-headless<5` pin.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from classemo.faces.box import FaceBox, largest_face

FRONTAL_CASCADE = "haarcascade_frontalface_default.xml"
FRONTAL_ALT_CASCADE = "haarcascade_frontalface_alt2.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"


_Detection = tuple[int, int, int, int, float]  # x, y, w, h, score


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, name)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"could not load the Haar cascade {path}; opencv-python-headless<5 ships it")
    return cascade


def _nms(boxes: list[FaceBox], iou_threshold: float) -> list[FaceBox]:
    """Greedy non-maximum suppression, highest score first; frontal and profile cascades often fire together."""
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: (b.score, b.area), reverse=True):
        if all(box.iou(k) < iou_threshold for k in kept):
            kept.append(box)
    return kept


class HaarFaceDetector:
    """Frontal (and optionally profile) Haar cascades with a padded pass for tight, face-centred crops.

    A Haar window needs some context around the face: on a photo that is already a tight face crop the face
    fills the frame and the cascade misses it. When a pass finds nothing, the image is padded with a
    replicated border of `pad_fraction` of its size on each side and searched again; boxes are mapped back
    and clipped to the original image. Order: frontal, frontal padded, then (if enabled) profile, profile
    padded; the first pass that finds a face wins.
    """

    def __init__(
        self,
        *,
        min_size: int = 24,
        min_rel_size: float = 0.0,
        scale_factor: float = 1.1,
        min_neighbors: int = 4,
        use_profile: bool = False,
        profile_always: bool = False,
        max_side: int = 480,
        pad_fraction: float = 0.25,
        iou_threshold: float = 0.3,
    ) -> None:
        """Create a detector.

        Args:
            min_size: Smallest face side in pixels of the original image.
            min_rel_size: Smallest face side as a fraction of the image's shorter side; for photos known to be
                face-centred this skips the many small windows and makes detection several times faster.
            scale_factor: Cascade pyramid step; smaller is slower and finds more.
            min_neighbors: Overlapping detections needed to accept a face; higher means fewer false faces.
            use_profile: Also use the profile cascade, on the image and its mirror (it only knows one side).
            profile_always: Run the profile cascade on every image (several faces, some turned away); by default
                it runs only when the frontal cascade found nothing, which costs little on mostly frontal data.
            max_side: Images are downscaled to this longest side before detection, for speed.
            pad_fraction: Border added on each side in the second pass (0 disables the pass).
            iou_threshold: Overlap above which two boxes are the same face.
        """
        self.min_size = min_size
        self.min_rel_size = min_rel_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.use_profile = use_profile
        self.profile_always = profile_always
        self.max_side = max_side
        self.pad_fraction = pad_fraction
        self.iou_threshold = iou_threshold
        self._frontal = _load_cascade(FRONTAL_CASCADE)
        self._profile = _load_cascade(PROFILE_CASCADE) if use_profile else None

    def _run(self, cascade: cv2.CascadeClassifier, gray: np.ndarray, min_size: int) -> list[_Detection]:
        rects, _, weights = cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_size, min_size),
            outputRejectLevels=True,
        )
        return [(int(x), int(y), int(w), int(h), float(s)) for (x, y, w, h), s in zip(rects, np.ravel(weights))]

    def _profiles(self, gray: np.ndarray, min_size: int) -> list[_Detection]:
        # The profile cascade only knows faces turned one way; the mirror image finds the other side.
        width = gray.shape[1]
        mirrored = self._run(self._profile, np.ascontiguousarray(gray[:, ::-1]), min_size)
        return self._run(self._profile, gray, min_size) + [(width - x - w, y, w, h, s) for x, y, w, h, s in mirrored]

    def _detect_gray(self, gray: np.ndarray, min_size: int) -> tuple[list[_Detection], int]:
        """Detections in `gray` and the padding offset they were found with (0 = unpadded)."""
        offset = round(self.pad_fraction * max(gray.shape))
        padded = cv2.copyMakeBorder(gray, offset, offset, offset, offset, cv2.BORDER_REPLICATE) if offset else None
        found = self._run(self._frontal, gray, min_size)
        if self._profile is not None and self.profile_always:
            found += self._profiles(gray, min_size)
        if found:
            return found, 0
        if padded is not None:
            found = self._run(self._frontal, padded, min_size)
            if found:
                return found, offset
        if self._profile is not None and not self.profile_always:
            found = self._profiles(gray, min_size)
            if found:
                return found, 0
        if self._profile is not None and padded is not None:
            return self._profiles(padded, min_size), offset
        return [], 0

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Find faces, largest first.

        Args:
            image: (H, W, 3) BGR or (H, W) grey uint8 image.

        Returns:
            Boxes in the input image's pixel coordinates, sorted by area, largest first.
        """
        if image is None or image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {getattr(image, 'shape', None)}")
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        min_size = max(12, round(max(self.min_size, self.min_rel_size * min(height, width)) * scale))
        found, offset = self._detect_gray(gray, min_size)
        boxes = []
        for x, y, w, h, s in found:
            x0, y0 = max(0.0, (x - offset) / scale), max(0.0, (y - offset) / scale)
            x1, y1 = min(float(width), (x - offset + w) / scale), min(float(height), (y - offset + h) / scale)
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                boxes.append(FaceBox(round(x0), round(y0), round(x1 - x0), round(y1 - y0), s))
        return sorted(_nms(boxes, self.iou_threshold), key=lambda b: b.area, reverse=True)

    def detect_largest(self, image: np.ndarray) -> FaceBox | None:
        """The largest face, or None when there is none."""
        return largest_face(self.detect(image))
