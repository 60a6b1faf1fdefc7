"""Synthetic identities and expressions: who is drawn, in which pose, and the facial actions of each label.

Each expression of the paper's label set is a vector of facial actions (brow raise, furrow, lid aperture, smile,
jaw drop, ...), loosely after FACS action units; `intensity` scales that vector away from neutral.
See docs/synthetic-data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Facial actions, each in roughly [-1, 1]. Positive eye_open widens the lids, negative narrows them.
ACTIONS: tuple[str, ...] = (
    "brow_raise",  # whole brow up (AU1+2)
    "brow_inner",  # inner ends up, outer ends down: the sad/fear oblique brow (AU1)
    "brow_furrow",  # inner ends down and together (AU4)
    "eye_open",  # lid aperture: + wide (AU5), - narrowed (AU7)
    "cheek_raise",  # cheeks up, lower lids pushed up (AU6)
    "smile",  # lip corners up (AU12), negative pulls them down (AU15)
    "jaw_drop",  # mouth opening (AU25/26)
    "lip_stretch",  # lips pulled sideways (AU20)
    "lip_press",  # lips pressed thin (AU24)
    "sneer",  # upper lip raised on one side (AU10, unilateral)
    "nose_wrinkle",  # wrinkled bridge, raised nostrils (AU9)
)

# Apex action vector per label of the paper's set; intensity 1 reaches these values.
EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile": 1.0, "jaw_drop": 0.55, "cheek_raise": 0.9, "eye_open": -0.35, "brow_raise": 0.15},
    "positive": {"smile": 0.55, "cheek_raise": 0.3, "brow_raise": 0.35, "eye_open": 0.1},
    "sad": {"brow_inner": 1.0, "smile": -0.85, "eye_open": -0.45, "lip_press": 0.3},
    "fear": {"brow_raise": 0.8, "brow_inner": 0.6, "eye_open": 1.0, "jaw_drop": 0.6, "lip_stretch": 0.9},
    "anger": {"brow_furrow": 1.0, "eye_open": -0.3, "lip_press": 1.0, "smile": -0.35},
    "disgust": {"nose_wrinkle": 1.0, "sneer": 1.0, "brow_furrow": 0.45, "eye_open": -0.55, "smile": -0.3},
}

_SKIN_BGR = np.array(  # light to dark; the darkest stay bright enough for Haar's eye/cheek contrast
    [[205, 220, 245], [180, 200, 235], [150, 180, 225], [130, 165, 210], [110, 145, 195],
     [95, 128, 175], [88, 115, 160], [80, 105, 150]], dtype=np.float32)
_HAIR_BGR = np.array(
    [[25, 25, 30], [30, 40, 60], [40, 60, 95], [60, 105, 150], [115, 115, 120], [40, 70, 150], [20, 20, 20]],
    dtype=np.float32)
HAIR_STYLES: tuple[str, ...] = ("short", "long", "buzz", "fringe", "bun", "curly")


@dataclass(frozen=True)
class FaceIdentity:
    """One synthetic person: everything about the face that does not change with expression or frame."""

    subject_id: str
    face_width: float  # half-width of the face ellipse relative to its half-height
    jaw: float  # 0 round chin .. 0.35 pointed chin
    skin: tuple[float, float, float]  # BGR
    eye_spacing: float  # eye centre distance from the midline, face units
    eye_size: float  # eye half-width, face units
    brow_thickness: float  # face units
    hair_style: str
    hair: tuple[float, float, float]  # BGR
    glasses: bool
    mouth_width: float  # lip half-width, face units
    expressiveness: float  # multiplies every action: some people emote more
    shirt: tuple[float, float, float]  # BGR

    @classmethod
    def random(cls, rng: np.random.Generator, subject_id: str) -> "FaceIdentity":
        """Draw a new identity."""
        skin = _SKIN_BGR[rng.integers(len(_SKIN_BGR))] * rng.uniform(0.93, 1.05, 3)
        return cls(
            subject_id=subject_id,
            face_width=float(rng.uniform(0.72, 0.88)),
            jaw=float(rng.uniform(0.0, 0.3)),
            skin=tuple(float(v) for v in np.clip(skin, 0, 255)),
            eye_spacing=float(rng.uniform(0.3, 0.38)),
            eye_size=float(rng.uniform(0.13, 0.16)),
            brow_thickness=float(rng.uniform(0.05, 0.08)),
            hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
            hair=tuple(float(v) for v in _HAIR_BGR[rng.integers(len(_HAIR_BGR))]),
            glasses=bool(rng.random() < 0.25),
            mouth_width=float(rng.uniform(0.24, 0.3)),
            expressiveness=float(rng.uniform(0.8, 1.15)),
            shirt=tuple(float(v) for v in rng.uniform(40, 220, 3)),
        )


@dataclass(frozen=True)
class Pose:
    """Where the face sits in the image: centre (px), half-height (px) and in-plane rotation (degrees)."""

    cx: float
    cy: float
    radius: float
    angle: float = 0.0
    yaw: float = 0.0  # -1..1, a horizontal squash and shift that fakes a slight head turn


def action_vector(expression: str, intensity: float, *, identity: FaceIdentity | None = None,
                  extra: dict[str, float] | None = None) -> dict[str, float]:
    """Facial actions for `expression` at `intensity` (0 = neutral, 1 = apex), plus optional offsets.

    Raises:
        ValueError: unknown expression or intensity outside [0, 1].
    """
    if expression not in EXPRESSIONS:
        raise ValueError(f"unknown expression {expression!r}; expected one of {sorted(EXPRESSIONS)}")
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"intensity must lie in [0, 1], got {intensity}")
    gain = intensity * (identity.expressiveness if identity is not None else 1.0)
    actions = {a: gain * EXPRESSIONS[expression].get(a, 0.0) for a in ACTIONS}
    for k, v in (extra or {}).items():
        if k not in actions:
            raise ValueError(f"unknown facial action {k!r}; expected one of {ACTIONS}")
        actions[k] += v
    return actions
