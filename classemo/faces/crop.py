"""Face crops: a square around the box (unaligned, as the Haar path always did) or a five-landmark aligned crop.

Alignment is a similarity transform (rotation, uniform scale, translation) that maps the five landmarks onto
ArcFace's template (Deng et al., CVPR 2019), widened by the margin: the eyes end up level, at a fixed distance, at the
same place in every crop, whatever the head's roll and the face's size. The transform is the closed-form
least-squares fit of Umeyama (1991), so the same landmarks always give the same crop (no RANSAC sampling).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from classemo.faces.box import FaceBox, Landmarks

# ArcFace's five-point template for a 112 px crop of a tight face, as fractions of the crop side.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]]) / 112.0
MIN_EYE_DISTANCE = 2.0  # pixels; below it the landmarks say nothing about the roll, so the box crop is used


def _region(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """image[y0:y1, x0:x1] with the parts outside the image filled by replicating its border."""
    height, width = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if cx1 <= cx0 or cy1 <= cy0:  # wholly outside: the nearest border pixels, replicated
        cx0, cy0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
        cx1, cy1 = cx0 + 1, cy0 + 1
    part = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)  # top, bottom, left, right
    return cv2.copyMakeBorder(part, *pads, cv2.BORDER_REPLICATE) if any(pads) else part


def crop_face(image: np.ndarray, box: FaceBox, *, margin: float = 0.2, size: int = 112) -> np.ndarray:
    """Square crop around a face, with a margin, resized to `size` x `size` (no alignment).

    The square is centred on the box with side `max(w, h) * (1 + 2 * margin)`; parts outside the image are
    filled by replicating the border, so a face at the edge keeps its position in the crop.

    Args:
        image: (H, W, C) or (H, W) image.
        box: The face.
        margin: Extra context on each side, as a fraction of the face side.
        size: Output side in pixels.

    Returns:
        (size, size, C) or (size, size) array of the input's dtype.
    """
    if margin < 0 or size < 1:
        raise ValueError(f"margin must be >= 0 and size >= 1, got margin={margin}, size={size}")
    side = max(1, round(max(box.w, box.h) * (1 + 2 * margin)))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    crop = _region(image, x0, y0, x0 + side, y0 + side)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform from points `src` to `dst` (Umeyama 1991), as a 2x3 matrix.

    Args:
        src: (N, 2) points.
        dst: (N, 2) points.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sing, vt = np.linalg.svd(d.T @ s / len(src))  # (2, 2) cross-covariance
    flip = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])  # no reflections
    rot = u @ flip @ vt
    scale = float(np.trace(np.diag(sing) @ flip) / s.var(0).sum())
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def aligned_template(size: int, margin: float) -> np.ndarray:
    """Where the five landmarks go in a `size` px crop with `margin` of context on each side of the face: (5, 2)."""
    return (ARCFACE_TEMPLATE + margin) / (1 + 2 * margin) * size


def eye_angle(landmarks: Landmarks | np.ndarray) -> float:
    """Roll of the line from the image-left eye to the image-right eye, in degrees (0 = level)."""
    pts = np.asarray(landmarks, np.float64)
    return math.degrees(math.atan2(pts[1, 1] - pts[0, 1], pts[1, 0] - pts[0, 0]))


def usable_landmarks(landmarks: Landmarks | None) -> bool:
    """Five finite points with the eyes at least `MIN_EYE_DISTANCE` apart."""
    if landmarks is None:
        return False
    pts = np.asarray(landmarks, np.float64)
    return pts.shape == (5, 2) and bool(np.isfinite(pts).all()) and float(
        np.hypot(*(pts[1] - pts[0]))) >= MIN_EYE_DISTANCE


def align_face(image: np.ndarray, landmarks: Landmarks | np.ndarray, *, margin: float = 0.2,
               size: int = 112) -> np.ndarray:
    """Aligned square crop: the five landmarks mapped onto the widened ArcFace template.

    A face much larger than the crop is first shrunk with area averaging (a plain warp would alias), from just the
    region the crop covers, so the cost does not depend on the frame's size. Parts outside the image are filled by
    replicating its border, as in `crop_face`.

    Args:
        image: (H, W, C) or (H, W) image.
        landmarks: (5, 2) points, YuNet's order.
        margin: Extra context on each side, as a fraction of the face side.
        size: Output side in pixels.

    Raises:
        ValueError: for landmarks that are not five finite points with the eyes apart.
    """
    if margin < 0 or size < 1:
        raise ValueError(f"margin must be >= 0 and size >= 1, got margin={margin}, size={size}")
    if not usable_landmarks(landmarks):  # type: ignore[arg-type]
        raise ValueError(f"cannot align on landmarks {np.asarray(landmarks).tolist()}: need five finite (x, y) points "
                         f"with the eyes at least {MIN_EYE_DISTANCE} px apart")
    pts = np.asarray(landmarks, np.float64)
    m = similarity_transform(pts, aligned_template(size, margin))  # image -> crop
    # The crop's corners in the image: only this region is read.
    inv = cv2.invertAffineTransform(m)
    corners = inv @ np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64).T  # (2, 4)
    x0, y0 = np.floor(corners.min(1)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(1)).astype(int) + 2
    region = _region(image, x0, y0, x1, y1)
    scale = math.hypot(m[0, 0], m[0, 1])  # crop pixels per image pixel
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # now region -> crop
    if scale < 0.5:
        # Shrink to about twice the final resolution with area averaging, then warp the rest bilinearly.
        rh, rw = region.shape[:2]
        nw, nh = max(1, round(rw * 2 * scale)), max(1, round(rh * 2 * scale))
        region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
        m[:, :2] = m[:, :2] @ np.diag([rw / nw, rh / nh])
    return cv2.warpAffine(region, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
