"""Excluded seats: regions of the frame that are never analysed (students who did not consent, a door, a window).

A region is a rectangle in frame fractions, `x0,y0,x1,y1` with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (the same
fractions as `--teacher region:...`). Before anything looks at a frame, `mask_frame` paints every excluded region a
flat grey, so the detector cannot find a face there, the tracker cannot take an appearance from it and no crop can
hold its pixels; `outside` then drops any face whose centre still falls in a region (a face straddling the edge).
Nothing of an excluded region is detected, cropped, tracked or written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

FILL = 128  # mid grey: no edges, no skin, nothing a face detector fires on
_NUMBER = r"\s*([0-9]*\.?[0-9]+)\s*"
_PATTERN = re.compile(",".join([_NUMBER] * 4))


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame in fractions of its width (x) and height (y)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.x0 < self.x1 <= 1.0 and 0.0 <= self.y0 < self.y1 <= 1.0):
            raise ValueError(f"an excluded region must be x0,y0,x1,y1 with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
                             f"(fractions of the frame), got {self.as_list()}")

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The region in whole pixels of a `width` x `height` frame, rounded outwards (never smaller)."""
        return (int(np.floor(self.x0 * width)), int(np.floor(self.y0 * height)),
                int(np.ceil(self.x1 * width)), int(np.ceil(self.y1 * height)))


def parse_regions(specs: str | Iterable[str | Sequence[float]] | None) -> tuple[Region, ...]:
    """Regions from "x0,y0,x1,y1" strings (one, several separated by ";", or a list) or 4-number sequences.

    Raises:
        ValueError: naming the spec that is not four fractions, or a region that is empty or off the frame.
    """
    if specs is None:
        return ()
    if isinstance(specs, str):
        specs = [s for s in specs.split(";") if s.strip()]
    out = []
    for spec in specs:
        if isinstance(spec, str):
            m = _PATTERN.fullmatch(spec.strip())
            if m is None:
                raise ValueError(f"an excluded region must be four fractions 'x0,y0,x1,y1' (e.g. 0,0,0.25,1 for the "
                                 f"left quarter), got {spec!r}")
            values = [float(v) for v in m.groups()]
        else:
            values = [float(v) for v in spec]
            if len(values) != 4:
                raise ValueError(f"an excluded region must have four numbers x0,y0,x1,y1, got {list(spec)!r}")
        out.append(Region(*values))
    return tuple(out)


def mask_frame(frame: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """A copy of `frame` (H, W[, C]) with every region painted `FILL`; the frame itself when there are none."""
    if not regions:
        return frame
    out = frame.copy()
    h, w = frame.shape[:2]
    for r in regions:
        x0, y0, x1, y1 = r.pixels(w, h)
        out[y0:y1, x0:x1] = FILL
    return out


def outside(boxes: Sequence, regions: Sequence[Region], frame_size: tuple[int, int]) -> list:
    """The boxes (anything with x, y, w, h) whose centre is in no region of a (width, height) frame."""
    if not regions:
        return list(boxes)
    w, h = frame_size

    def inside(b: object) -> bool:
        cx, cy = (b.x + b.w / 2) / w, (b.y + b.h / 2) / h  # type: ignore[attr-defined]
        return any(r.x0 <= cx <= r.x1 and r.y0 <= cy <= r.y1 for r in regions)

    return [b for b in boxes if not inside(b)]
