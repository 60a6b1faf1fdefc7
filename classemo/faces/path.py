"""The one face path: a BGR frame in, per face its box, score, five landmarks and the crop the model sees.

Converters, `classemo analyze`, the classroom converter, Serve's image routes and `Predictor.predict_image` all call
`FacePath`, with the `FaceSettings` that the dataset manifest and then the checkpoint config carry, so a crop looks
the same at training and at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from classemo.faces.box import FaceBox
from classemo.faces.crop import align_face, crop_face, usable_landmarks
from classemo.faces.detectors import DETECTOR_NAMES, FaceDetector, make_detector
from classemo.faces.exclude import Region, mask_frame, outside

log = logging.getLogger(__name__)


class FaceInputError(ValueError):
    """An image the face path cannot read: zero size, a wrong number of channels or a wrong dtype."""


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found and cropped; written into the dataset manifest and the checkpoint config."""

    detector: str = "yunet"  # yunet (five landmarks), haar or haar-profile (boxes only)
    align: bool = True  # warp the five landmarks onto a fixed template (eyes level); needs yunet
    margin: float = 0.2  # context around the face on each side, as a fraction of the face side
    size: int = 112  # side of the square crop, in pixels (the model resizes it to its own input size)
    min_face: int = 16  # faces with a shorter box side, in frame pixels, are skipped: too small to read
    max_side: int = 640  # yunet: frames are shrunk to this longest side for detection only (0: never)
    model_path: str | None = None  # yunet: a user's own ONNX file; None is the one shipped in the package

    def __post_init__(self) -> None:
        if self.detector not in DETECTOR_NAMES:
            raise ValueError(f"unknown face detector {self.detector!r}; choose one of {', '.join(DETECTOR_NAMES)}")
        if self.align and self.detector != "yunet":
            raise ValueError(f"alignment needs landmarks, which the {self.detector} detector does not give: use the "
                             "yunet detector or turn alignment off")
        if self.margin < 0 or self.size < 1 or self.min_face < 0 or self.max_side < 0:
            raise ValueError(f"need margin >= 0, size >= 1, min_face >= 0 and max_side >= 0; got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, size: int = 112) -> "FaceSettings":
        """Settings from a manifest or checkpoint; None (written before face settings existed) is the old path:
        Haar boxes, unaligned crops with a 0.2 margin, at `size`.

        Raises:
            ValueError: for unknown keys or invalid values, naming them.
        """
        if data is None:
            return legacy_settings(size)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown face settings {sorted(unknown)}")
        return cls(**data)

    def differences(self, other: "FaceSettings") -> dict[str, tuple[Any, Any]]:
        """Settings that change what a crop looks like and differ between the two: name -> (self's, other's).

        `max_side` and `model_path` only change which faces are found, not their crops, so they are left out.
        """
        keys = ("detector", "align", "margin", "size")
        return {k: (getattr(self, k), getattr(other, k)) for k in keys if getattr(self, k) != getattr(other, k)}


def legacy_settings(size: int = 112) -> FaceSettings:
    """What data and checkpoints without face settings were made with: Haar boxes, unaligned crops."""
    return FaceSettings(detector="haar", align=False, margin=0.2, size=size, min_face=0)


def warn_if_different(crops: FaceSettings, model: FaceSettings, where: str) -> str | None:
    """Log (and return) a warning when crops (a dataset's, or an override's) differ from the model's training crops
    in a way the model would notice."""
    diff = crops.differences(model)
    if not diff:
        return None
    what = ", ".join(f"{k}: {a!r} here vs {b!r} in training" for k, (a, b) in diff.items())
    msg = (f"{where}: face crops made differently from the model's training crops ({what}); accuracy will suffer. "
           "Use the model's face settings, or train on crops made this way.")
    log.warning(msg)
    return msg


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A (H, W, 3) uint8 BGR view of a frame: grey is expanded and an alpha channel dropped.

    Raises:
        FaceInputError: for an empty image, a dtype other than uint8 or a channel count other than 1, 3 or 4.
    """
    if not isinstance(image, np.ndarray):
        raise FaceInputError(f"expected an image array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.size == 0:
        raise FaceInputError(f"expected an (H, W) or (H, W, C) image with pixels, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise FaceInputError(f"expected 8-bit pixels, got {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels != 3:
        raise FaceInputError(f"expected 1, 3 or 4 channels, got {channels}")
    return image


@dataclass(frozen=True)
class Face:
    """One face of a frame: where it is and the crop the model sees (BGR, `size` x `size`)."""

    box: FaceBox
    crop: np.ndarray
    aligned: bool  # False: the box crop (no landmarks, unusable landmarks, or alignment off)


class FacePath:
    """Detect, then crop (aligned on five landmarks where the settings ask for it), as one call.

    Args:
        settings: detector and crop settings (default: YuNet, aligned, margin 0.2, 112 px).
        detector: an already built detector to use instead of `settings.detector` (e.g. a configured `HaarDetector`
            or a test double); its boxes are cropped by the same rules.
        exclude: regions of the frame never analysed (`classemo.faces.exclude`): a deployment's choice, not the
            model's, so not part of `settings`. `mask` paints them out; `detect` never returns a face there.
    """

    def __init__(self, settings: FaceSettings | None = None, *, detector: FaceDetector | None = None,
                 exclude: Sequence[Region] = ()) -> None:
        self.settings = settings or FaceSettings()
        self.exclude = tuple(exclude)
        s = self.settings
        if detector is None:
            yunet = {"max_side": s.max_side, "model_path": s.model_path}
            detector = make_detector(s.detector, **(yunet if s.detector == "yunet" else {}))
        self.detector = detector
        self.too_small = 0  # faces skipped for being under min_face, over this path's life
        self._pose: Any = None  # the landmark net and solvePnP, built on the first `describe`

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        """Faces of at least `min_face` px, largest first.

        Raises:
            FaceInputError: see `as_bgr`.
        """
        frame = self.mask(as_bgr(frame_bgr))
        boxes = outside(self.detector.detect(frame), self.exclude, (frame.shape[1], frame.shape[0]))
        kept = [b for b in boxes if min(b.w, b.h) >= self.settings.min_face]
        self.too_small += len(boxes) - len(kept)
        return sorted(kept, key=lambda b: b.area, reverse=True)

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """The frame with the excluded regions painted out (a copy; the frame itself when nothing is excluded): what
        every later step (tracker, landmarks, crops) must be given instead of the decoded frame."""
        return mask_frame(frame, self.exclude)

    def crop(self, frame: np.ndarray, box: FaceBox) -> tuple[np.ndarray, bool]:
        """The crop of one face and whether it is aligned.

        Args:
            frame: the image the box was found in, in any channel order (the crop keeps it).
            box: the face.
        """
        s = self.settings
        if s.align and usable_landmarks(box.landmarks):
            return align_face(frame, box.landmarks, margin=s.margin, size=s.size), True  # type: ignore[arg-type]
        return crop_face(frame, box, margin=s.margin, size=s.size), False

    def describe(self, frame_bgr: np.ndarray, boxes: list[FaceBox], *, pose: bool = True) -> np.ndarray:
        """(N, 5) per face: detector score, head yaw, pitch and roll in degrees, and sharpness
        (`classemo.faces.reading.FACE_COLUMNS`); NaN where a value cannot be told, never an exception.

        Args:
            frame_bgr: the frame the boxes were found in.
            boxes: its faces.
            pose: False leaves the pose NaN (the landmark net is most of this call's cost, about 4 ms a face).
        """
        from classemo.faces.pose import PoseReader
        from classemo.faces.reading import FACE_COLUMNS, face_sharpness

        out = np.full((len(boxes), len(FACE_COLUMNS)), np.nan)
        if not boxes:
            return out
        frame = as_bgr(frame_bgr)
        out[:, 0] = [b.score for b in boxes]
        if pose:
            if self._pose is None:
                self._pose = PoseReader()
            out[:, 1:4] = self._pose(frame, boxes)
        out[:, 4] = [face_sharpness(frame, (b.x, b.y, b.w, b.h)) for b in boxes]
        return out

    def faces(self, frame_bgr: np.ndarray) -> list[Face]:
        """Detect and crop every face of a frame, largest first."""
        frame = as_bgr(frame_bgr)
        return [Face(b, *self.crop(frame, b)) for b in self.detect(frame)]
