"""A detected face: its box, the detector's score and, from YuNet, five landmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Landmarks = tuple[tuple[float, float], ...]  # five (x, y) points: right eye, left eye, nose, right/left mouth corner


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the image it was found in.

    `score` is the detector's confidence (YuNet) or the cascade's level weight (Haar). `landmarks` are YuNet's five
    points in the subject's terms (the subject's right eye is on the image's left), or None from Haar; they may lie
    outside the image for a face cut by its border.
    """

    x: int
    y: int
    w: int
    h: int
    score: float = 0.0
    landmarks: Landmarks | None = None

    @property
    def area(self) -> int:
        return self.w * self.h

    def iou(self, other: "FaceBox") -> float:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.x + self.w, other.x + other.w), min(self.y + self.h, other.y + other.h)
        inter = max(0, x1 - x0) * max(0, y1 - y0)
        union = self.area + other.area - inter
        return inter / union if union else 0.0


def largest_face(boxes: list[FaceBox]) -> FaceBox | None:
    """The box with the largest area, or None for an empty list."""
    return max(boxes, key=lambda b: b.area, default=None)


def whole_image_box(image: np.ndarray) -> FaceBox:
    """A box covering the whole image: the fallback for photos that are already face-centred crops."""
    return FaceBox(0, 0, int(image.shape[1]), int(image.shape[0]), 0.0)
