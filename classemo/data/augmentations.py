"""Train-time augmentation of clips: one random draw per clip, applied identically to all its frames.

`ClipAugment` is the geometry and photometry every training run gets; `ClassroomAugment` adds what a classroom camera
does to faces (small, soft, compressed, bowed, partly hidden), on with `data.classroom_augment`; `AugmentChain` runs
them in order. `classemo.data.transforms` applies them in `prepare_clip` and `finish_frames`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

import cv2
import numpy as np


@dataclass
class ClipAugment:
    """Train-time augmentation with one random draw per clip, applied identically to all its frames.

    Sharing the draw keeps the clip temporally coherent: a flip or shift that changed from frame to frame would
    look like motion to the temporal encoder.
    """

    flip_p: float = 0.5  # probability of a horizontal flip (faces are left/right symmetric)
    max_shift: float = 0.06  # largest translation, as a fraction of the frame side
    max_scale: float = 0.08  # largest zoom in or out, as a fraction
    brightness: float = 0.2  # largest additive brightness change, as a fraction of 255
    contrast: float = 0.2  # largest multiplicative contrast change around the frame mean

    def __call__(self, frames: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Augment a clip.

        Args:
            frames: `(H, W, 3)` uint8 RGB frames of one clip, all the same size.
            rng: Source of the clip's one random draw.

        Returns:
            The augmented frames, same shapes and dtype.
        """
        flip = rng.random() < self.flip_p
        tx, ty = rng.uniform(-self.max_shift, self.max_shift, size=2)
        scale = 1.0 + rng.uniform(-self.max_scale, self.max_scale)
        beta = rng.uniform(-self.brightness, self.brightness) * 255.0
        alpha = 1.0 + rng.uniform(-self.contrast, self.contrast)
        out = []
        for frame in frames:
            h, w = frame.shape[:2]
            img = frame[:, ::-1] if flip else frame
            matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), 0.0, scale)
            matrix[:, 2] += (tx * w, ty * h)
            img = cv2.warpAffine(np.ascontiguousarray(img), matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)
            mu = img.mean()
            img = (img.astype(np.float32) - mu) * alpha + mu + beta
            out.append(np.clip(img, 0, 255).astype(np.uint8))
        return out


# One clip's train-time augmentation: frames and the generator of its draw -> augmented frames.
Augment = Callable[[Sequence[np.ndarray], np.random.Generator], list[np.ndarray]]

# The face side that `ClassroomAugment.blur_sigma` is stated at: FER+'s 48 px, the built-in model's input.
_BLUR_REF_SIDE = 48.0


@dataclass
class ClassroomAugment:
    """Train-time degradations of classroom footage, one random draw per clip, applied identically to all its frames.

    A classroom camera sees small, soft, compressed faces that often look down at a desk and hide behind a hand or a
    neighbour's head. Each degradation has its own probability (0 turns it off) and range. They run in the order the
    camera would produce them: the scene (downcast head, occlusion), the optics (blur), the sampling (a small face),
    the codec (JPEG). Use it after `ClipAugment`, at the model's side.
    """

    downcast_p: float = 0.3  # probability of tilting the face as if the head were bowed (the label is kept)
    downcast_pitch: tuple[float, float] = (10.0, 30.0)  # head pitch in degrees, drawn uniformly
    # Camera distance in frame sides for the pinhole model: nearer exaggerates the perspective (top wider, chin
    # shorter); far away the warp is only the cos(pitch) foreshortening.
    downcast_distance: float = 2.0
    occlude_p: float = 0.25  # probability of a flat rectangle (a hand, a neighbour's head) over the lower or side part
    occlude_area: tuple[float, float] = (0.1, 0.3)  # its area, as a fraction of the frame; at most half of it
    blur_p: float = 0.25  # probability of a Gaussian blur (focus, motion, a soft lens)
    blur_sigma: tuple[float, float] = (0.5, 1.5)  # its sigma in px at a 48 px face, scaled with the frame side
    small_p: float = 0.3  # probability of shrinking the face (INTER_AREA) and enlarging it back (INTER_LINEAR)
    small_side: tuple[int, int] = (16, 40)  # the side in px it is shrunk to: a face at the back of the room
    jpeg_p: float = 0.3  # probability of re-encoding as JPEG (streams and recorded lessons are compressed)
    jpeg_quality: tuple[int, int] = (30, 90)  # JPEG quality, drawn uniformly (integers, both ends included)

    def __post_init__(self) -> None:
        for name in (f.name for f in fields(self) if f.name.endswith("_p")):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ClassroomAugment.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        bounds = {"downcast_pitch": (0.0, 80.0), "occlude_area": (0.0, 0.5), "blur_sigma": (0.0, 20.0),
                  "small_side": (2, 4096), "jpeg_quality": (1, 100)}
        for name, (lo, hi) in bounds.items():
            value = tuple(getattr(self, name))
            if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
                raise ValueError(f"ClassroomAugment.{name} must be a (low, high) range with {lo} <= low <= high <= "
                                 f"{hi}, got {getattr(self, name)}")
        if self.downcast_distance <= 1.0:
            # At one frame side or nearer, the bowed top of the face would reach the camera's plane.
            raise ValueError(f"ClassroomAugment.downcast_distance must be above 1 (frame sides), got "
                             f"{self.downcast_distance}")

    def __call__(self, frames: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Degrade a clip.

        Args:
            frames: `(H, W, 3)` uint8 RGB frames of one clip, all the same size (grey-as-RGB is kept grey).
            rng: Source of the clip's one random draw.

        Returns:
            The degraded frames, same shapes and dtype.
        """
        out = list(frames)
        if not out:
            return out
        h, w = out[0].shape[:2]
        if rng.random() < self.downcast_p:
            matrix = downcast_homography(h, w, rng.uniform(*self.downcast_pitch), self.downcast_distance)
            out = [cv2.warpPerspective(f, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                   for f in out]
        if rng.random() < self.occlude_p:
            y0, y1, x0, x1 = _occluder_box(h, w, rng.uniform(*self.occlude_area), rng)
            # A flat grey, or the clip's mean colour (a hand or a head in the room's light), the same in every frame.
            fill = np.full(3, rng.integers(0, 256)) if rng.random() < 0.5 else np.mean(out, axis=(0, 1, 2))
            out = [f.copy() for f in out]
            for f in out:
                f[y0:y1, x0:x1] = np.round(fill).astype(np.uint8)
        if rng.random() < self.blur_p:
            sigma = rng.uniform(*self.blur_sigma) * max(h, w) / _BLUR_REF_SIDE
            out = [cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101) for f in out]
        if rng.random() < self.small_p:
            side = int(rng.integers(self.small_side[0], self.small_side[1] + 1))
            if side < max(h, w):  # a frame already this small has no detail to lose
                small = (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
                out = [cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (w, h),
                                  interpolation=cv2.INTER_LINEAR) for f in out]
        if rng.random() < self.jpeg_p:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            out = [jpeg_round_trip(f, quality) for f in out]
        return out


def downcast_homography(h: int, w: int, pitch: float, distance: float = 2.0) -> np.ndarray:
    """The 3x3 homography that shows a `(h, w)` face plane rotated by `pitch` degrees about its horizontal axis.

    A pinhole camera at `distance` frame sides looks at the plane's centre. A positive pitch bows the head: the top of
    the face comes closer (wider) and the chin goes away (narrower, shorter); the centre stays where it was.
    """
    theta, d = np.deg2rad(pitch), distance * max(h, w)
    cx, cy = w / 2.0, h / 2.0
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    x, y = src[:, 0] - cx, src[:, 1] - cy  # plane coordinates, y down
    depth = d + y * np.sin(theta)  # the top (y < 0) comes nearer the camera
    # Focal length d: the centre keeps its scale.
    dst = np.stack([cx + d * x / depth, cy + d * y * np.cos(theta) / depth], axis=1).astype(np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def _occluder_box(h: int, w: int, area: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A rectangle of `area` (fraction of the frame) at the bottom edge or at a side edge: `(y0, y1, x0, x1)`."""
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))  # width / height
    bw = int(np.clip(round(w * np.sqrt(area * aspect)), 1, w))
    bh = int(np.clip(round(h * w * area / bw), 1, h))
    if rng.random() < 0.5:  # from below (a hand under the chin, a raised book)
        x0 = int(rng.integers(0, w - bw + 1))
        return h - bh, h, x0, x0 + bw
    y0 = int(rng.integers(0, h - bh + 1))  # from a side (a neighbour's head, a hand on the cheek)
    x0 = 0 if rng.random() < 0.5 else w - bw
    return y0, y0 + bh, x0, x0 + bw


def jpeg_round_trip(frame: np.ndarray, quality: int) -> np.ndarray:
    """Encode an `(H, W, 3)` RGB frame as JPEG at `quality` and decode it; a grey frame is coded as grey (no
    chroma), as a grey camera would."""
    grey = bool((frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all())
    plane = frame[..., 0] if grey else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise FrameError(f"JPEG encoding failed for a frame of shape {frame.shape}")
    if grey:
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass
class AugmentChain:
    """Augmentations applied in order to a clip, each drawing from the clip's generator in turn."""

    steps: tuple[Augment, ...]  # e.g. (ClipAugment(), ClassroomAugment()): geometry and photometry, then the camera

    def __call__(self, frames: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        out = list(frames)
        for step in self.steps:
            out = step(out, rng)
        return out
