"""One synthetic face crop: a head drawn supersampled on a random background, then the camera's nuisance."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from classemo.synth.draw import draw_person
from classemo.synth.face import FaceIdentity, Pose, action_vector

SUPERSAMPLE = 3  # drawn at 3x and area-downsampled: smoother edges than LINE_AA alone at 64 px


def random_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A plain-ish room background: a colour gradient with a few soft rectangles (boards, windows, shelves)."""
    c0, c1 = rng.uniform(60, 220, 3), rng.uniform(60, 220, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(c0 * (1 - t) + c1 * t, (h, w, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(0, 4))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x + int(rng.integers(w // 8, w // 2)), y + int(rng.integers(h // 8, h // 2))
        cv2.rectangle(img, (x, y), (x1, y1), tuple(float(v) for v in rng.uniform(40, 230, 3)), -1, cv2.LINE_AA)
    return img


def apply_nuisance(img: np.ndarray, rng: np.random.Generator, *, light: float, blur: float, noise: float) -> None:
    """Lighting gradient, Gaussian blur and sensor noise, in place on a uint8 image."""
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    if light > 0:
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        g = ((xx / w - 0.5) * math.cos(ang) + (yy / h - 0.5) * math.sin(ang)) * 2 * light
        f *= (1 + g)[..., None]
    if blur > 0.05:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    if noise > 0:
        f += rng.normal(0, noise, f.shape).astype(np.float32)
    img[:] = np.clip(f, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Nuisance:
    """Per-image nuisance: head pose offsets relative to a centred face, lighting, blur and noise."""

    dx: float = 0.0  # face centre shift, fraction of the image side
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0  # in-plane rotation, degrees
    yaw: float = 0.0  # -1..1 fake head turn
    light: float = 0.0  # strength of a linear lighting gradient
    blur: float = 0.0  # Gaussian sigma at the output size, pixels
    noise: float = 0.0  # Gaussian noise sigma, grey levels

    @classmethod
    def random(cls, rng: np.random.Generator, jitter: float = 1.0) -> "Nuisance":
        """Draw nuisance; `jitter` scales every term (0 = a clean, centred face)."""
        return cls(dx=jitter * rng.uniform(-0.04, 0.04), dy=jitter * rng.uniform(-0.04, 0.04),
                   scale=1 + jitter * rng.uniform(-0.07, 0.07), angle=jitter * rng.uniform(-8, 8),
                   yaw=jitter * rng.uniform(-0.5, 0.5), light=jitter * rng.uniform(0, 0.3),
                   blur=jitter * rng.uniform(0, 0.6), noise=jitter * rng.uniform(1, 4))

    def moved(self, rng: np.random.Generator, amount: float) -> "Nuisance":
        """A small per-frame head movement around this pose; lighting and camera stay."""
        return Nuisance(dx=self.dx + amount * rng.normal(0, 0.008), dy=self.dy + amount * rng.normal(0, 0.008),
                        scale=self.scale * (1 + amount * rng.normal(0, 0.01)),
                        angle=self.angle + amount * rng.normal(0, 1.5), yaw=self.yaw + amount * rng.normal(0, 0.05),
                        light=self.light, blur=self.blur, noise=self.noise)


def render_actions(identity: FaceIdentity, actions: dict[str, float], size: int, rng: np.random.Generator,
                   nuisance: Nuisance, background: np.ndarray, *, zoom: float = 1.0) -> np.ndarray:
    """Render a face crop from raw facial actions, so a clip can keep one background and move one pose per frame.

    `zoom` scales the face in the crop: 1 draws it as an aligned crop at margin 0.2 shows a face, and
    `margin_zoom(m)` as one at margin m.

    Returns:
        (size, size, 3) uint8 RGB image.
    """
    big = size * SUPERSAMPLE
    canvas = cv2.resize(background, (big, big), interpolation=cv2.INTER_LINEAR) if background.shape[0] != big \
        else background.copy()
    pose = Pose(cx=big * (0.5 + nuisance.dx), cy=big * (0.5 + nuisance.dy), radius=big * 0.4 * zoom * nuisance.scale,
                angle=nuisance.angle, yaw=float(np.clip(nuisance.yaw, -1, 1)))
    draw_person(canvas, identity, actions, pose)
    img = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    apply_nuisance(img, rng, light=nuisance.light, blur=nuisance.blur, noise=nuisance.noise)
    return np.ascontiguousarray(img[..., ::-1])


def margin_zoom(margin: float) -> float:
    """How much larger a face is in an aligned crop at `margin` than at 0.2, the margin the faces are drawn for: the
    template's face side is 1 / (1 + 2 margin) of the crop."""
    return (1 + 2 * 0.2) / (1 + 2 * margin)


def render_face(identity: FaceIdentity, expression: str, intensity: float, *, size: int,
                rng: np.random.Generator, jitter: float = 1.0, extra_actions: dict[str, float] | None = None
                ) -> np.ndarray:
    """Render one face crop of `identity` showing `expression` at `intensity`.

    Args:
        identity: Who is drawn.
        expression: A label of the paper's set (fear, anger, disgust, happy, sad, positive, neutral).
        intensity: 0 (neutral face) .. 1 (apex of the expression).
        size: Side of the square output image, pixels.
        rng: Source of the nuisance (pose jitter, lighting, blur, noise, background).
        jitter: Scales the nuisance; 0 gives a centred, clean face.
        extra_actions: Offsets added to the expression's facial actions (a person's or clip's style).

    Returns:
        (size, size, 3) uint8 RGB image.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    actions = action_vector(expression, intensity, identity=identity, extra=extra_actions)
    big = size * SUPERSAMPLE
    return render_actions(identity, actions, size, rng, Nuisance.random(rng, jitter), random_background(rng, big, big))
