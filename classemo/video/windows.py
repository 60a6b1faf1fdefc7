"""Per-track sliding windows over cached per-frame features, emitted as soon as they are full.

Each face crop's spatial features are computed once and appended to its track's buffer; windows of `window`
frames are cut every `stride` frames, and the buffer keeps only what a future window still needs, so memory is
bounded by (live tracks x window) however long the video is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """One track's window: frame times (T,), boxes (T, 4) x, y, w, h and spatial features (T, D)."""

    track_id: int
    times: np.ndarray
    boxes: np.ndarray
    features: np.ndarray

    @property
    def centre(self) -> int:
        return len(self.times) // 2


class WindowBuffer:
    """Sliding windows of `window` frames with step `stride`, per track.

    A track shorter than one window still gets one (shorter) window at `flush`, and frames after a track's last
    full window are covered by a final window ending at its last frame, so every observed frame is in at least one
    window.
    """

    def __init__(self, window: int, stride: int) -> None:
        if window < 1 or not 1 <= stride <= window:
            raise ValueError(f"need window >= 1 and 1 <= stride <= window, got window={window}, stride={stride}")
        self.window = window
        self.stride = stride
        self._buf: dict[int, deque] = {}
        self._uncovered: dict[int, int] = {}  # frames appended since the last emitted window ended

    def add(self, track_id: int, time_s: float, box: np.ndarray, feature: np.ndarray) -> Window | None:
        """Append one observation; return a window if this frame completed one."""
        buf = self._buf.setdefault(track_id, deque())
        buf.append((time_s, np.asarray(box, dtype=float), np.asarray(feature)))
        self._uncovered[track_id] = self._uncovered.get(track_id, 0) + 1
        if len(buf) < self.window:
            return None
        win = self._make(track_id, list(buf)[: self.window])
        for _ in range(self.stride):
            buf.popleft()
        self._uncovered[track_id] = 0
        return win

    def _make(self, track_id: int, items: list) -> Window:
        times = np.array([it[0] for it in items], dtype=float)  # (T,)
        boxes = np.stack([it[1] for it in items])  # (T, 4)
        feats = np.stack([it[2] for it in items])  # (T, D)
        return Window(track_id, times, boxes, feats)

    def flush(self, track_id: int) -> Window | None:
        """End a track: return the final window covering its uncovered frames (None if all are covered)."""
        buf = self._buf.pop(track_id, None)
        uncovered = self._uncovered.pop(track_id, 0)
        if not buf or uncovered == 0:
            return None
        return self._make(track_id, list(buf)[-self.window:])

    def flush_all(self) -> list[Window]:
        """End every open track."""
        return [w for tid in list(self._buf) if (w := self.flush(tid)) is not None]

    @property
    def open_tracks(self) -> list[int]:
        return list(self._buf)
