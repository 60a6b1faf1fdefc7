"""The preprocessing contract: what a model is fed, written once into its checkpoint and read from there by all.

A unified-model checkpoint's `config.json` holds a `preprocessing` block: the model's input side and frame count,
the per-channel mean and std, and the face path that made its crops. Training writes it (from the model and the
dataset's manifest); `Predictor`, evaluation, `classemo analyze` and Serve read it back through `Preprocessing`,
so no second copy of these numbers exists anywhere.

Before any of that, encoded image bytes become pixels in one way only, `decode_image_bgr` (EXIF orientation applied,
always three 8-bit channels), which training's `classemo.data.transforms.decode_image`, the converters, the video
reader and Serve all call, so a phone photo is upright for the model wherever it enters. It lives here, below
`classemo.data` and `classemo.video`, so that both can use it without importing each other.

StarGAN is the one exception, by design: its generator ends in tanh, so its images always live in [-1, 1]
(`GAN_MEAN`, `GAN_STD`), whatever the unified model's normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from classemo.faces.path import FaceSettings

# Inputs on [0, 1] map to [-1, 1]: the range a ViT trained from scratch likes and the one StarGAN's tanh produces.
DEFAULT_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
DEFAULT_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
GAN_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)  # StarGAN's images: [0, 1] <-> [-1, 1] (tanh output)
GAN_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


class PreprocessingError(ValueError):
    """A checkpoint's preprocessing block that is missing or inconsistent."""


class ImageDecodeError(ValueError):
    """Bytes that are not a decodable image (empty, truncated or another format)."""


def decode_image_bgr(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG (or any format OpenCV reads) bytes as OpenCV's colour read does.

    IMREAD_COLOR applies the EXIF orientation tag, so a phone photo comes out upright, and always gives three 8-bit
    channels: greyscale is expanded, alpha dropped, 16-bit scaled down.

    Returns:
        `(H, W, 3)` uint8 array in OpenCV's BGR order.

    Raises:
        ImageDecodeError: If `data` is empty, not bytes, truncated, or not an image format OpenCV reads.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageDecodeError("cannot decode an image from empty bytes")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        head = bytes(data[:8])
        raise ImageDecodeError(f"{len(data)} bytes are not a decodable PNG/JPEG image (starts with {head!r})")
    return image


@dataclass(frozen=True)
class Preprocessing:
    """How frames become the model's input tensors; the checkpoint's `preprocessing` block as an object."""

    image_size: int  # side of the square model input, in pixels
    num_frames: int  # frames per clip the model was built for (shorter clips are padded and masked)
    mean: tuple[float, float, float] = DEFAULT_MEAN  # per channel, on the [0, 1] scale, RGB order
    std: tuple[float, float, float] = DEFAULT_STD
    face: FaceSettings | None = None  # the face path that made the training crops (None: written before it existed)

    def __post_init__(self) -> None:
        if self.image_size < 1 or self.num_frames < 1:
            raise PreprocessingError(f"image_size and num_frames must be positive, got {self.image_size} and "
                                     f"{self.num_frames}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise PreprocessingError(f"mean and std need three channels with std > 0, got {self.mean} / {self.std}")

    @classmethod
    def for_model(cls, module: Any, *, face: FaceSettings | Mapping[str, Any] | None = None) -> "Preprocessing":
        """The contract of a model built by `create_model`: size and frames from the model, mean/std from its
        `default_cfg` (the timm convention), face settings from the dataset that trained it."""
        cfg = dict(getattr(module, "default_cfg", {}) or {})
        if face is not None and not isinstance(face, FaceSettings):
            face = FaceSettings(**face)
        return cls(image_size=int(module.image_size), num_frames=int(module.num_frames),
                   mean=_triple(cfg.get("mean", DEFAULT_MEAN)), std=_triple(cfg.get("std", DEFAULT_STD)), face=face)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preprocessing":
        """Read a checkpoint's `preprocessing` block.

        Raises:
            PreprocessingError: If a required key is missing or a value is invalid, naming it.
        """
        missing = [k for k in ("image_size", "num_frames") if k not in data]
        if missing:
            raise PreprocessingError(f"checkpoint preprocessing lacks {missing}; it has {sorted(data)}")
        try:
            face = None if data.get("face") is None else FaceSettings.from_dict(data["face"])
        except (TypeError, ValueError) as e:
            raise PreprocessingError(f"face settings are invalid: {e}") from None
        try:
            return cls(image_size=int(data["image_size"]), num_frames=int(data["num_frames"]),
                       mean=_triple(data.get("mean", DEFAULT_MEAN)), std=_triple(data.get("std", DEFAULT_STD)),
                       face=face)
        except PreprocessingError:
            raise
        except (TypeError, ValueError) as e:
            raise PreprocessingError(f"checkpoint preprocessing has an invalid value: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON block written into a checkpoint's config."""
        out: dict[str, Any] = {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                               "num_frames": self.num_frames}
        if self.face is not None:
            out["face"] = self.face.to_dict()
        return out

    def face_settings(self) -> FaceSettings:
        """The face path to use at inference: the recorded one, or the old Haar path for checkpoints without it."""
        return FaceSettings.from_dict(self.face.to_dict() if self.face else None, size=self.image_size)


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c
