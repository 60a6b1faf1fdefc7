"""Procedural synthetic faces and expression clips with known truth, drawn with OpenCV.

Faces are drawn in a face-centred unit frame (x right, y down; the face ellipse has half-height 1) and mapped to
pixels by one affine transform, so head pose, scale and position are a single matrix. Each expression of the
paper's label set is a vector of facial actions (brow raise, furrow, lid aperture, smile, jaw drop, ...), loosely
after FACS action units; `intensity` scales that vector away from neutral. See docs/synthetic-data.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import cv2
import numpy as np
import typer

from classemo.faces import FaceSettings
from classemo.labels import LabelSet

if TYPE_CHECKING:
    from classemo.data.format import Manifest

SYNTH_VERSION = "synth/2"  # 2: every clip carries a resting mood (V/A offset, arousal shown in the lids)
SUPERSAMPLE = 3  # drawn at 3x and area-downsampled: smoother edges than LINE_AA alone at 64 px

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


# ----------------------------------------------------------------------------------------------- drawing


def _ellipse_pts(cx: float, cy: float, ax: float, ay: float, t0: float = 0.0, t1: float = 2 * math.pi,
                 n: int = 48) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)


def _bezier(p0: Sequence[float], p1: Sequence[float], p2: Sequence[float], n: int = 16) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


class _Painter:
    """Maps face units to canvas pixels and draws anti-aliased, sub-pixel shapes (cv2 `shift` of 4 bits)."""

    SHIFT = 4

    def __init__(self, canvas: np.ndarray, matrix: np.ndarray, unit_px: float) -> None:
        self.canvas = canvas
        self.m = matrix  # (2, 3) face units -> canvas px
        self.unit_px = unit_px  # pixels per face unit, for line widths

    def px(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        out = pts @ self.m[:, :2].T + self.m[:, 2]
        return np.round(out * (1 << self.SHIFT)).astype(np.int32)

    def fill(self, pts: np.ndarray, color: Sequence[float], canvas: np.ndarray | None = None) -> None:
        cv2.fillPoly(self.canvas if canvas is None else canvas, [self.px(pts)], color, cv2.LINE_AA, self.SHIFT)

    def line(self, pts: np.ndarray, color: Sequence[float], width: float, closed: bool = False,
             canvas: np.ndarray | None = None) -> None:
        w = max(1, int(round(width * self.unit_px)))
        cv2.polylines(self.canvas if canvas is None else canvas, [self.px(pts)], closed, color, w, cv2.LINE_AA,
                      self.SHIFT)


def _face_outline(ident: FaceIdentity) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 72)
    x, y = ident.face_width * np.cos(t), np.sin(t)
    # Narrow the lower half toward the chin; the upper half stays an ellipse (cranium).
    x = np.where(y > 0, x * (1 - ident.jaw * y**2), x)
    return np.stack([x, y * 1.05], axis=1)


def _shade(color: Sequence[float], k: float) -> tuple[float, float, float]:
    return tuple(float(min(255.0, c * k)) for c in color)


def _draw_hair_back(p: _Painter, ident: FaceIdentity) -> None:
    w = ident.face_width
    if ident.hair_style == "long":
        p.fill(np.concatenate([_ellipse_pts(0, -0.15, w * 1.22, 1.05, math.pi, 2 * math.pi),
                               [[w * 1.25, 1.25], [-w * 1.25, 1.25]]]), ident.hair)
    elif ident.hair_style == "bun":
        p.fill(_ellipse_pts(0, -1.2, 0.32, 0.25), ident.hair)
    elif ident.hair_style == "curly":
        for k in range(9):
            a = math.pi + k * math.pi / 8
            p.fill(_ellipse_pts(w * 1.05 * math.cos(a), -0.25 + 0.95 * math.sin(a), 0.24, 0.24), ident.hair)


def _draw_hair_front(p: _Painter, ident: FaceIdentity) -> None:
    w = ident.face_width
    depth = {"short": -0.5, "long": -0.45, "buzz": -0.55, "fringe": -0.45, "bun": -0.5, "curly": -0.48}
    low = depth[ident.hair_style]
    cap = _ellipse_pts(0, low, w * 1.07, 1.1 + low + 0.08, math.pi, 2 * math.pi)
    color = ident.hair
    p.fill(cap, color)
    if ident.hair_style == "fringe":
        p.fill(np.array([[-w, low], [w * 0.6, low], [-w * 0.2, -0.5], [-w * 0.95, -0.42]]), color)
    if ident.hair_style == "long":  # strands framing the face keep the sides dark, as real hair does
        for s in (-1, 1):
            p.fill(np.array([[s * w * 1.02, low], [s * w * 0.9, low], [s * w * 0.98, 0.4], [s * w * 1.12, 0.5]]),
                   color)


def _draw_eye(p: _Painter, ident: FaceIdentity, side: int, a: dict[str, float], skin: Sequence[float]) -> None:
    cx, cy = side * ident.eye_spacing, -0.12
    ex = ident.eye_size * (1 + 0.06 * a["eye_open"])
    aperture = float(np.clip(1 + 0.6 * a["eye_open"] - 0.3 * max(a["cheek_raise"], 0), 0.12, 2.0))
    up, down = 0.065 * aperture, 0.05 * aperture * (1 - 0.5 * max(a["cheek_raise"], 0))
    upper = _ellipse_pts(cx, cy, ex, up, math.pi, 2 * math.pi, 20)
    lower = _ellipse_pts(cx, cy, ex, down, 0, math.pi, 20)
    opening = np.concatenate([upper, lower])
    p.fill(opening, (195, 200, 205))  # eye whites sit in shadow; pure white breaks the dark eye band
    iris_r = min(0.052, 0.9 * (up + down))
    iris = _ellipse_pts(cx, cy - 0.005, 0.055, iris_r)
    p.fill(iris, (55, 65, 70))
    p.fill(_ellipse_pts(cx, cy - 0.005, 0.025, min(0.025, iris_r)), (15, 15, 15))
    # The lid line is the darkest, most stable eye cue; it is what Haar's eye features see at 40 px.
    p.line(upper, (25, 25, 30), 0.035)
    p.line(lower, _shade(skin, 0.55), 0.015)
    if a["cheek_raise"] > 0.2:  # crow's feet
        for k in (-1, 0, 1):
            p.line(np.array([[cx + side * (ex + 0.02), cy + k * 0.03],
                             [cx + side * (ex + 0.08), cy + k * 0.05]]), _shade(skin, 0.7), 0.012)


def _draw_brow(p: _Painter, ident: FaceIdentity, side: int, a: dict[str, float]) -> None:
    y0 = -0.33 - 0.14 * a["brow_raise"] + 0.05 * a["brow_furrow"]
    inner = [side * (0.09 - 0.035 * a["brow_furrow"]), y0 - 0.16 * a["brow_inner"] + 0.12 * a["brow_furrow"]]
    mid = [side * 0.3, y0 - 0.06 - 0.02 * a["brow_inner"]]
    outer = [side * 0.52, y0 + 0.02 + 0.06 * a["brow_inner"] - 0.03 * a["brow_furrow"]]
    p.line(_bezier(inner, mid, outer), _shade(ident.hair, 0.8), ident.brow_thickness)
    if a["brow_furrow"] > 0.3:  # vertical glabella lines
        for s in (-0.03, 0.03):
            p.line(np.array([[s, -0.32], [s * 1.3, -0.2]]), (60, 60, 70), 0.012 * a["brow_furrow"])


def _draw_nose(p: _Painter, ident: FaceIdentity, a: dict[str, float], skin: Sequence[float]) -> None:
    lift = 0.03 * a["nose_wrinkle"]
    flare = 1 + 0.25 * a["nose_wrinkle"]
    p.line(np.array([[0.06, 0.0], [0.08, 0.18 - lift]]), _shade(skin, 0.78), 0.018)
    for s in (-1, 1):
        p.fill(_ellipse_pts(s * 0.055 * flare, 0.22 - lift, 0.035 * flare, 0.018), _shade(skin, 0.45))
    if a["nose_wrinkle"] > 0.2:
        for k in range(3):
            y = -0.08 + 0.035 * k
            p.line(_bezier([-0.08, y], [0, y - 0.02], [0.08, y]), _shade(skin, 0.62), 0.014 * a["nose_wrinkle"])
        for s in (-1, 1):  # nasolabial fold deepens with the sneer
            p.line(_bezier([s * 0.11, 0.2], [s * 0.2, 0.3], [s * 0.22, 0.42]), _shade(skin, 0.65), 0.015)


def _draw_mouth(p: _Painter, ident: FaceIdentity, a: dict[str, float], skin: Sequence[float]) -> None:
    cy = 0.46
    hw = ident.mouth_width * (1 + 0.3 * a["lip_stretch"] + 0.12 * max(a["smile"], 0) - 0.1 * a["lip_press"])
    corner = -0.14 * a["smile"]  # y offset of the corners (up is negative)
    opening = 0.3 * max(a["jaw_drop"], 0)
    lip = 0.035 * (1 - 0.7 * min(max(a["lip_press"], 0), 1))
    sneer = 0.12 * a["sneer"]
    lc, rc = np.array([-hw, cy + corner]), np.array([hw, cy + corner])
    # Upper lip: the left half is lifted by the sneer (unilateral AU10).
    up_mid = np.array([0.0, cy - lip - 0.3 * sneer + 0.015 * max(a["smile"], 0)])
    upper_out = np.concatenate([_bezier(lc, [-hw * 0.5, cy - lip * 1.4 - sneer], up_mid, 10),
                                _bezier(up_mid, [hw * 0.5, cy - lip * 1.4], rc, 10)[1:]])
    # The bottom of the mouth sags when the corners rise and bulges up when they fall.
    inner_top = _bezier(lc, [-0.2 * sneer, cy - 0.4 * sneer], rc, 16)
    inner_bot = _bezier(rc, [0.0, cy + opening - corner * 1.6], lc, 16)
    lip_color = (skin[0] * 0.5, skin[1] * 0.48, min(255.0, skin[2] * 0.75))
    lower_out = _bezier(rc, [0.0, cy + opening - corner * 1.6 + lip * 2.2], lc, 16)
    p.fill(np.concatenate([upper_out, lower_out]), lip_color)
    if opening > 0.01:
        p.fill(np.concatenate([inner_top, inner_bot]), (35, 25, 45))
        if a["smile"] > 0.3:  # teeth show in a broad smile
            teeth = np.concatenate([inner_top, _bezier(rc, [0.0, cy + 0.35 * opening - corner * 0.6], lc, 16)])
            p.fill(teeth, (225, 230, 235))
    else:
        p.line(inner_top, (40, 30, 50), 0.02 + 0.01 * max(a["lip_press"], 0))
    if abs(a["smile"]) > 0.3:  # dimple/fold lines at the corners
        for c, s in ((lc, -1), (rc, 1)):
            p.line(np.array([c + [s * 0.02, 0], c + [s * 0.05, 0.06 * np.sign(a["smile"])]]), _shade(skin, 0.7),
                   0.012)


def _draw_glasses(p: _Painter, ident: FaceIdentity) -> None:
    for s in (-1, 1):
        p.line(_ellipse_pts(s * ident.eye_spacing, -0.12, ident.eye_size + 0.06, 0.11, n=32), (30, 30, 30), 0.022,
               closed=True)
    p.line(np.array([[-ident.eye_spacing + ident.eye_size + 0.06, -0.14],
                     [ident.eye_spacing - ident.eye_size - 0.06, -0.14]]), (30, 30, 30), 0.02)


def draw_person(canvas: np.ndarray, ident: FaceIdentity, actions: dict[str, float], pose: Pose,
                *, shoulders: bool = True, facing: bool = True) -> None:
    """Draw one head (and shoulders) onto a BGR uint8 canvas in place.

    Args:
        canvas: (H, W, 3) uint8 BGR image, drawn on in place.
        ident: Who is drawn.
        actions: Facial action values (see `ACTIONS`), e.g. from `action_vector`.
        pose: Centre, half-height and rotation of the face, in canvas pixels/degrees.
        shoulders: Also draw neck and shoulders below the head.
        facing: False draws the back of the head (the person turned away): no face is visible.
    """
    r, th = pose.radius, math.radians(pose.angle)
    squash = 1 - 0.12 * abs(pose.yaw)
    m = np.array([[r * math.cos(th) * squash, -r * math.sin(th), pose.cx],
                  [r * math.sin(th) * squash, r * math.cos(th), pose.cy]])
    p = _Painter(canvas, m, r)
    skin = ident.skin
    w = ident.face_width
    if shoulders:
        p.fill(_ellipse_pts(0, 2.45, 1.85, 1.1, math.pi, 2 * math.pi), ident.shirt)
        p.fill(np.array([[-0.27, 0.7], [0.27, 0.7], [0.3, 1.45], [-0.3, 1.45]]), _shade(skin, 0.8))
    _draw_hair_back(p, ident)
    for s in (-1, 1):  # ears
        p.fill(_ellipse_pts(s * w * 0.98, -0.02, 0.1, 0.18), _shade(skin, 0.9))
    outline = _face_outline(ident)
    if not facing:
        p.fill(outline, ident.hair)
        p.fill(_ellipse_pts(0, -0.1, w * 1.05, 1.05), ident.hair)
        return
    p.fill(outline, skin)
    _shade_face(canvas, p, ident, actions)
    _draw_hair_front(p, ident)
    # A turned head shows its features shifted toward the turn; the outline stays put.
    feat = _Painter(canvas, m.copy(), r)
    feat.m[:, 2] += m[:, :2] @ np.array([0.12 * pose.yaw, 0.0])
    p = feat
    for s in (-1, 1):
        _draw_brow(p, ident, s, actions)
        _draw_eye(p, ident, s, actions, skin)
    _draw_nose(p, ident, actions, skin)
    _draw_mouth(p, ident, actions, skin)
    if ident.glasses:
        _draw_glasses(p, ident)


def _shade_face(canvas: np.ndarray, p: _Painter, ident: FaceIdentity, a: dict[str, float]) -> None:
    """Soft relief: dark eye sockets and brow line, light cheeks and nose bridge, a shadow under the jaw.

    The Haar frontal cascade looks for exactly these intensity patterns (dark eye band over light cheeks, light
    bridge between dark eyes), so flat cartoon faces without them are missed.
    """
    h, w = canvas.shape[:2]
    corners = p.px(np.array([[-1.3, -1.3], [1.3, -1.3], [1.3, 1.3], [-1.3, 1.3]])) >> p.SHIFT
    x0, y0 = np.clip(corners.min(0), 0, [w, h])
    x1, y1 = np.clip(corners.max(0) + 1, 0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    roi = (slice(y0, y1), slice(x0, x1))
    shade = np.zeros((y1 - y0, x1 - x0), np.float32)
    mask = np.zeros_like(shade)
    sub = _Painter(shade, p.m.copy(), p.unit_px)
    sub.m[:, 2] -= [x0, y0]
    sub.fill(_face_outline(ident), (1.0,), canvas=mask)
    cheek_y = 0.2 - 0.06 * max(a["cheek_raise"], 0)
    for s in (-1, 1):
        sub.fill(_ellipse_pts(s * ident.eye_spacing, -0.17, 0.2, 0.15), (-0.5,))
        sub.fill(_ellipse_pts(s * 0.45, cheek_y, 0.2, 0.14), (0.16 + 0.06 * max(a["cheek_raise"], 0),))
    sub.fill(_ellipse_pts(0, -0.12, 0.06, 0.18), (0.14,))
    sub.fill(_ellipse_pts(0, -0.6, 0.45, 0.15), (0.1,))
    sub.fill(_ellipse_pts(0, 0.48, 0.3, 0.1), (-0.15,))
    sub.fill(_ellipse_pts(0, 1.1, 0.6, 0.12), (-0.25,))
    sigma = max(0.6, 0.09 * p.unit_px)
    shade = cv2.GaussianBlur(shade, (0, 0), sigma) * cv2.GaussianBlur(mask, (0, 0), sigma * 0.5)
    patch = canvas[roi].astype(np.float32) * (1 + shade[..., None])
    canvas[roi] = np.clip(patch, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- one face


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
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


def _render(identity: FaceIdentity, actions: dict[str, float], size: int, rng: np.random.Generator,
            nuisance: Nuisance, background: np.ndarray) -> np.ndarray:
    big = size * SUPERSAMPLE
    canvas = cv2.resize(background, (big, big), interpolation=cv2.INTER_LINEAR) if background.shape[0] != big \
        else background.copy()
    pose = Pose(cx=big * (0.5 + nuisance.dx), cy=big * (0.5 + nuisance.dy), radius=big * 0.4 * nuisance.scale,
                angle=nuisance.angle, yaw=float(np.clip(nuisance.yaw, -1, 1)))
    draw_person(canvas, identity, actions, pose)
    img = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    apply_nuisance(img, rng, light=nuisance.light, blur=nuisance.blur, noise=nuisance.noise)
    return np.ascontiguousarray(img[..., ::-1])


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
    return _render(identity, actions, size, rng, Nuisance.random(rng, jitter), _background(rng, big, big))


# ----------------------------------------------------------------------------------------------- clips


def intensity_course(num_frames: int, peak_index: int, apex: float, width: float) -> np.ndarray:
    """Onset -> apex -> offset: a Gaussian bump of height `apex` whose unique maximum is at `peak_index`.

    Args:
        num_frames: Clip length.
        peak_index: Frame of the apex.
        apex: Intensity at the apex, in [0, 1].
        width: Standard deviation of the bump, in frames.
    """
    t = np.arange(num_frames, dtype=np.float64)
    return apex * np.exp(-0.5 * ((t - peak_index) / max(width, 1e-3)) ** 2)


# A clip's resting mood, as in the classroom generator (synth_classroom.SCENARIOS): a small valence offset and an
# arousal offset from tired (-0.4) to alert (+0.25) that shows in the lids, eye_open = MOOD_EYE_GAIN * arousal
# (the classroom's dull students: arousal -0.35, lids -0.45). Without it no training face is tired, and a model
# reads a tired classroom's narrowed lids as disgust or sadness.
MOOD_VALENCE = (-0.1, 0.1)
MOOD_AROUSAL = (-0.4, 0.25)
MOOD_EYE_GAIN = 1.25


def frame_va(label_va: tuple[float, float], course: np.ndarray,
             mood: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame valence/arousal: the resting `mood` moved toward the label's V/A in step with the intensity."""
    return (np.clip(mood[0] * (1 - course) + course * label_va[0], -1, 1),
            np.clip(mood[1] * (1 - course) + course * label_va[1], -1, 1))


def assign_subject_splits(subject_ids: Sequence[str], seed: int,
                          fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> dict[str, str]:
    """Seeded split of subjects into train/val/test, so that no subject appears in two splits.

    Every split gets at least one subject when there are three or more.
    """
    order = list(subject_ids)
    np.random.default_rng([seed, 7]).shuffle(order)
    n = len(order)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    n_train = n - n_val - n_test
    return {s: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, s in enumerate(order)}


def _encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG frame")
    return buf.tobytes()


def synth_clips(*, clips_per_class: int, num_frames: int, image_size: int, seed: int, subjects: int = 30,
                labels: LabelSet | None = None, fps: float = 10.0) -> Iterator[dict]:
    """Dataset rows (see classemo/data/format.py) of synthetic expression clips, generated lazily.

    Each clip is one identity going neutral -> apex -> back with a known `peak_index`; frame V/A follow the
    intensity from (0, 0) to the label's default V/A (jittered per clip). The clip-level V/A is the apex frame's.
    Every clip draws from its own seeded stream, so output is identical for the same arguments.

    Args:
        clips_per_class: Clips per label.
        num_frames: Frames per clip.
        image_size: Side of the square face crops.
        seed: Seed of everything: identities, splits, expressions and nuisance.
        subjects: Number of distinct identities; clips are split by identity.
        labels: Label set to draw (default the paper's); every label must be a drawable expression.
        fps: Frame rate written into the rows.
    """
    labels = labels or LabelSet.paper()
    _check_synth_args(labels, clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size,
                      subjects=subjects, fps=fps)
    return _synth_rows(labels, clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size,
                       seed=seed, subjects=subjects, fps=fps)


def _check_synth_args(labels: LabelSet, *, clips_per_class: int, num_frames: int, image_size: int, subjects: int,
                      fps: float) -> None:
    """Raise ValueError naming the first bad argument (eagerly, before anything is written)."""
    unknown = [n for n in labels.names if n not in EXPRESSIONS]
    if unknown:
        raise ValueError(f"the synthetic generator cannot draw labels {unknown}; it knows {sorted(EXPRESSIONS)}")
    for name, v in (("clips_per_class", clips_per_class), ("num_frames", num_frames), ("subjects", subjects)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")


def _synth_rows(labels: LabelSet, *, clips_per_class: int, num_frames: int, image_size: int, seed: int,
                subjects: int, fps: float) -> Iterator[dict]:
    id_rng = np.random.default_rng([seed, 1])
    idents = [FaceIdentity.random(id_rng, f"synth-{seed}-{k:03d}") for k in range(subjects)]
    split_of = assign_subject_splits([i.subject_id for i in idents], seed)
    plan = [(label, j) for j in range(clips_per_class) for label in labels.names]
    for k, (label, j) in enumerate(plan):
        rng = np.random.default_rng([seed, 2, k])
        # Cycle through identities so every subject shows every expression (given enough clips).
        ident = idents[(j * len(labels) + labels.index(label) + j) % subjects]
        peak = int(rng.integers(num_frames // 3, max(num_frames // 3 + 1, (2 * num_frames) // 3 + 1)))
        peak = min(peak, num_frames - 1)
        apex = float(rng.uniform(0.6, 1.0)) if label != "neutral" else 0.0
        course = intensity_course(num_frames, peak, apex, width=float(rng.uniform(0.25, 0.6)) * num_frames)
        va = labels.default_va[label]
        # Per-clip V/A jitter, bounded so the apex valence keeps the label's sign.
        va_clip = (va[0] + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1)),
                   va[1] + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1)))
        mood = (float(rng.uniform(*MOOD_VALENCE)), float(rng.uniform(*MOOD_AROUSAL)))
        if label == "neutral":
            # A neutral face shows only its mood: V/A are the mood's, at every frame.
            fv, fa = np.full(num_frames, mood[0]), np.full(num_frames, mood[1])
        else:
            fv, fa = frame_va(va_clip, course, mood)
        style = {a: float(rng.normal(0, 0.08)) for a in ACTIONS}  # the clip's own way of moving the face
        style["eye_open"] += MOOD_EYE_GAIN * mood[1]
        big = image_size * SUPERSAMPLE
        background = _background(rng, big, big)
        base = Nuisance.random(rng)
        frames = []
        nuisance = base
        for t in range(num_frames):
            actions = action_vector(label, float(course[t]), identity=ident, extra=style)
            frames.append(_encode_png(_render(ident, actions, image_size, rng, nuisance, background)))
            nuisance = nuisance.moved(rng, 1.0)
        yield {
            "clip_id": f"synth-{seed}-{k:06d}",
            "subject_id": ident.subject_id,
            "source": "synth",
            "split": split_of[ident.subject_id],
            "frames": frames,
            "fps": fps,
            "peak_index": peak,
            "label": label,
            "label_idx": labels.index(label),
            "valence": float(fv[peak]),
            "arousal": float(fa[peak]),
            "frame_valence": [float(v) for v in fv],
            "frame_arousal": [float(v) for v in fa],
            "va_source": "annotated",
        }


def synth_params(*, clips_per_class: int, num_frames: int, image_size: int, seed: int, subjects: int,
                 fps: float) -> dict:
    """The parameters that fully determine a synthetic dataset (stored in its manifest to allow reuse)."""
    return {"generator": SYNTH_VERSION, "clips_per_class": int(clips_per_class), "num_frames": int(num_frames),
            "image_size": int(image_size), "seed": int(seed), "subjects": int(subjects), "fps": float(fps)}


def existing_synth_dataset(root: str, params: dict) -> Manifest | None:
    """The manifest at root if it holds a synthetic dataset written with exactly `params`, else None."""
    from classemo.data.format import DatasetFormatError, read_manifest

    try:
        manifest = read_manifest(root)
    except (DatasetFormatError, FileNotFoundError):
        return None
    return manifest if manifest.extra.get("synth_params") == params else None


def write_synth_dataset(root: str, *, clips_per_class: int = 60, num_frames: int = 8, image_size: int = 64,
                        seed: int = 0, subjects: int = 30, fps: float = 10.0, reuse: bool = False,
                        progress: bool = False) -> Manifest:
    """Generate the synthetic expression dataset and write it in the Parquet format, split by subject.

    Args:
        root: Local path or `s3://bucket/prefix`.
        clips_per_class: Clips per label of the paper's set (7 labels).
        num_frames: Frames per clip.
        image_size: Side of the square face crops.
        seed: Same seed, same bytes.
        subjects: Distinct identities; train/val/test never share one.
        fps: Frame rate recorded in the rows.
        reuse: Return the existing dataset at root untouched when it was written with the same parameters.
        progress: Show a tqdm bar.

    Returns:
        The dataset's manifest; `manifest.extra["reused"]` says whether it was reused.
    """
    from tqdm import tqdm

    from classemo.data.format import write_dataset

    params = synth_params(clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size, seed=seed,
                          subjects=subjects, fps=fps)
    if reuse:
        found = existing_synth_dataset(str(root), params)
        if found is not None:
            found.extra["reused"] = True
            return found
    labels = LabelSet.paper()
    rows = synth_clips(clips_per_class=clips_per_class, num_frames=num_frames, image_size=image_size, seed=seed,
                       subjects=subjects, labels=labels, fps=fps)
    if progress:
        rows = tqdm(rows, total=clips_per_class * len(labels), desc="synth clips", unit="clip")
    # The faces are drawn centred and nearly upright, as an aligned crop shows a face: a model trained on them is
    # used with the default (YuNet, aligned) face path.
    face = FaceSettings(size=image_size).to_dict()
    manifest = write_dataset(rows, root, labels, image_size=image_size, source="synth",
                             converter_version=SYNTH_VERSION, extra={"synth_params": params}, face=face)
    manifest.extra["reused"] = False
    return manifest


def synth_command(
    out: Annotated[str, typer.Option("--out", help="Dataset root: a local folder or s3://bucket/prefix.")],
    clips_per_class: Annotated[int, typer.Option(help="Clips per label (7 labels).")] = 60,
    num_frames: Annotated[int, typer.Option(help="Frames per clip.")] = 8,
    image_size: Annotated[int, typer.Option(help="Side of the square face crops, pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same bytes.")] = 0,
    subjects: Annotated[int, typer.Option(help="Distinct synthetic identities; splits are by identity.")] = 30,
    force: Annotated[bool, typer.Option("--force", help="Regenerate even if an identical dataset exists.")] = False,
) -> None:
    """Generate the synthetic expression-clip dataset (reused when it already exists with the same parameters)."""
    try:
        manifest = write_synth_dataset(out, clips_per_class=clips_per_class, num_frames=num_frames,
                                       image_size=image_size, seed=seed, subjects=subjects, reuse=not force,
                                       progress=True)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    except OSError as e:  # unwritable folder, missing bucket, unreachable endpoint
        typer.echo(f"error: cannot write to {out}: {e}", err=True)
        raise typer.Exit(1) from None
    verb = "reused existing" if manifest.extra.get("reused") else "wrote"
    typer.echo(f"{verb} synthetic dataset at {out}: {manifest.num_clips} clips {manifest.counts}, "
               f"{num_frames} frames of {image_size}px, labels {[d['name'] for d in manifest.labels]}")


def sample_grid(*, seed: int = 0, identities: int = 4, size: int = 64, course_frames: int = 7) -> np.ndarray:
    """A picture of the generator for the docs: one row per identity with every label at its apex, then one row
    of a `happy` clip's onset -> apex -> offset. Labels are written above the columns.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    labels = LabelSet.paper().names
    rng = np.random.default_rng([seed, 5])
    header = np.full((16, size * len(labels), 3), 255, np.uint8)
    for j, name in enumerate(labels):
        cv2.putText(header, name, (j * size + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [header]
    for k in range(identities):
        ident = FaceIdentity.random(rng, f"grid-{k}")
        rows.append(np.concatenate([render_face(ident, e, 1.0, size=size, rng=rng, jitter=0.3) for e in labels], 1))
    ident = FaceIdentity.random(rng, "grid-course")
    big = size * SUPERSAMPLE
    background, nuisance = _background(rng, big, big), Nuisance.random(rng, 0.3)
    course = intensity_course(course_frames, course_frames // 2, 1.0, width=course_frames / 4)
    strip = [_render(ident, action_vector("happy", float(c), identity=ident), size, rng, nuisance, background)
             for c in course]
    strip_img = np.full_like(rows[1], 255)
    strip_img[:, : size * len(strip)] = np.concatenate(strip, 1)[:, : strip_img.shape[1]]
    rows.append(strip_img)
    return np.concatenate(rows, 0)
