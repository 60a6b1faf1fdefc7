"""Drawing one synthetic head with OpenCV.

Faces are drawn in a face-centred unit frame (x right, y down; the face ellipse has half-height 1) and mapped to
pixels by one affine transform, so head pose, scale and position are a single matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from classemo.synth.face import FaceIdentity, Pose


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
