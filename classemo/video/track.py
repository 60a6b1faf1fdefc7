"""Multi-face tracking: IoU matching with a constant-velocity motion model plus appearance for re-identification.

Each detection is matched to a live track by IoU against the track's predicted box (Hungarian assignment).
Detections left over are then matched to the recent tracks left over by centre distance to the predicted centre
(within `max_jump` face widths, at a similar size): a student sitting down drops a face height between two frames
at 5 fps, too far for IoU. Detections still left are compared with tracks lost for up to `max_lost_s` seconds by
appearance (cosine of a small zero-mean grey thumbnail) and a loose distance gate; a good match revives the lost
track under its old ID. Tracks
seen for less than `min_track_s` are dropped at the end and reported, since most are false detections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

try:  # scipy comes with the venv (via scikit-learn/mlflow); the greedy fallback keeps the tracker dependency-free.
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - exercised only without scipy
    linear_sum_assignment = None

THUMB = 16  # appearance thumbnail side: 256 grey values are enough to tell faces in one classroom apart


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes given as (N, 4) and (M, 4) arrays of x, y, w, h; returns (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]  # (N, 1) each
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]  # (M,) each
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def assign(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one assignment of rows to columns, keeping only pairs with cost <= max_cost."""
    if cost.size == 0:
        return []
    if linear_sum_assignment is not None:
        rows, cols = linear_sum_assignment(cost)
        pairs = zip(rows.tolist(), cols.tolist())
    else:
        pairs, used_r, used_c = [], set(), set()
        for flat in np.argsort(cost, axis=None):
            r, c = divmod(int(flat), cost.shape[1])
            if r not in used_r and c not in used_c:
                pairs.append((r, c))
                used_r.add(r)
                used_c.add(c)
    return [(r, c) for r, c in pairs if cost[r, c] <= max_cost]


def appearance(frame_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Unit-norm, zero-mean grey thumbnail of a box: a lighting-tolerant appearance vector (THUMB*THUMB,)."""
    import cv2

    h, w = frame_bgr.shape[:2]
    x, y, bw, bh = box
    x1, y1 = int(max(0, x)), int(max(0, y))
    x2, y2 = int(min(w, x + bw)), int(min(h, y + bh))
    if x2 <= x1 or y2 <= y1:
        return np.zeros(THUMB * THUMB, np.float32)
    crop = cv2.cvtColor(frame_bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    v = cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    v -= v.mean()
    return v / max(float(np.linalg.norm(v)), 1e-6)


@dataclass
class Track:
    """One person's track: last box, velocity (px/s) and a running appearance vector."""

    track_id: int
    box: np.ndarray  # (4,) x, y, w, h at last_t
    last_t: float
    first_t: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (2,) centre velocity in px/s
    feature: np.ndarray | None = None
    hits: int = 1
    area_sum: float = 0.0
    width_sum: float = 0.0
    centre_sum: np.ndarray = field(default_factory=lambda: np.zeros(2))  # running sums for the spread (mobility)
    centre_sq_sum: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def predict(self, t: float) -> np.ndarray:
        """Constant-velocity prediction of the box at time t (size held)."""
        dt = t - self.last_t
        out = self.box.copy()
        out[:2] += self.velocity * dt
        return out

    def update(self, t: float, box: np.ndarray, feature: np.ndarray | None, momentum: float) -> None:
        dt = t - self.last_t
        c_old = self.box[:2] + self.box[2:] / 2
        c_new = box[:2] + box[2:] / 2
        if dt > 0:
            # Smoothed velocity: Haar boxes jitter by a few pixels, and raw differences would overshoot.
            self.velocity = 0.5 * self.velocity + 0.5 * (c_new - c_old) / dt
        self.box = box.astype(float)
        self.last_t = t
        self.hits += 1
        self._accumulate(box)
        if feature is not None:
            if self.feature is None:
                self.feature = feature
            else:
                f = momentum * self.feature + (1 - momentum) * feature
                self.feature = f / max(float(np.linalg.norm(f)), 1e-6)

    def _accumulate(self, box: np.ndarray) -> None:
        c = box[:2] + box[2:] / 2
        self.area_sum += float(box[2] * box[3])
        self.width_sum += float(box[2])
        self.centre_sum += c
        self.centre_sq_sum += c * c

    @property
    def mobility(self) -> float:
        """Spread of the face centre (RMS distance from its mean position) in face widths: the "moves about" cue
        for roles. A spread rather than a path length, because detector jitter adds up along a path but averages
        out of a spread."""
        n = max(self.hits, 1)
        var = self.centre_sq_sum / n - (self.centre_sum / n) ** 2
        return float(np.sqrt(max(var.sum(), 0.0)) / max(self.width_sum / n, 1.0))

    @property
    def duration_s(self) -> float:
        return self.last_t - self.first_t

    @property
    def mean_area(self) -> float:
        return self.area_sum / max(self.hits, 1)


@dataclass
class TrackerStats:
    """What the tracker did: kept tracks and the ones dropped for being too short."""

    kept: dict[int, Track]
    dropped: dict[int, Track]
    reidentified: int  # number of times a lost track was revived by appearance


class Tracker:
    """Online multi-face tracker with stable IDs (see the module docstring for the method).

    Args:
        iou_threshold: minimum IoU between a track's predicted box and a detection to match them.
        max_lost_s: how long a track that is not seen stays available for re-identification.
        min_track_s: tracks spanning less than this are dropped at `finish` (unless the whole video is shorter).
        appearance_threshold: minimum appearance cosine to revive a lost track.
        max_reid_distance: loose gate for revival: centre distance in face widths.
        max_jump: a recent track unmatched by IoU takes a free detection whose centre is within this many face widths
            of its predicted centre, at 2/3 to 3/2 its size (0: off).
        momentum: weight of the old appearance vector in the running average.
        first_id: the first track id (a resumed live stream goes on after the ids it has used).
    """

    def __init__(self, *, iou_threshold: float = 0.25, max_lost_s: float = 5.0, min_track_s: float = 1.0,
                 appearance_threshold: float = 0.5, max_reid_distance: float = 3.0, max_jump: float = 1.0,
                 momentum: float = 0.8, first_id: int = 0) -> None:
        self.iou_threshold = iou_threshold
        self.max_lost_s = max_lost_s
        self.min_track_s = min_track_s
        self.appearance_threshold = appearance_threshold
        self.max_reid_distance = max_reid_distance
        self.max_jump = max_jump
        self.momentum = momentum
        self.tracks: dict[int, Track] = {}
        self._next_id = first_id
        self._reid = 0
        self._first_t: float | None = None
        self._last_t = 0.0

    def _new_track(self, t: float, box: np.ndarray, feature: np.ndarray | None) -> Track:
        tr = Track(self._next_id, box.astype(float), t, t, feature=feature)
        tr._accumulate(tr.box)
        self.tracks[tr.track_id] = tr
        self._next_id += 1
        return tr

    def update(self, t: float, boxes: np.ndarray, frame_bgr: np.ndarray | None = None) -> list[int]:
        """Match the detections of one frame to tracks.

        Args:
            t: frame time in seconds (increasing).
            boxes: (N, 4) x, y, w, h detections.
            frame_bgr: the frame, for the appearance cue; without it only IoU and motion are used.

        Returns:
            The track ID of each detection, in order.
        """
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        if self._first_t is None:
            self._first_t = t
        self._last_t = t
        feats = [appearance(frame_bgr, b) if frame_bgr is not None else None for b in boxes]
        ids: list[int | None] = [None] * len(boxes)
        # Tracks seen recently (within ~1 s) compete on IoU; older ones only via appearance below, because their
        # motion prediction is no longer worth much.
        alive = [tr for tr in self.tracks.values() if t - tr.last_t <= self.max_lost_s]
        recent = [tr for tr in alive if t - tr.last_t <= 1.0]
        if recent and len(boxes):
            pred = np.stack([tr.predict(t) for tr in recent])
            cost = 1.0 - iou_matrix(pred, boxes)
            for r, c in assign(cost, 1.0 - self.iou_threshold):
                ids[c] = recent[r].track_id
        free = [c for c, i in enumerate(ids) if i is None]
        jumped = [tr for tr in recent if tr.track_id not in ids]
        if free and jumped and self.max_jump > 0:
            cost = np.full((len(jumped), len(free)), np.inf)
            for r, tr in enumerate(jumped):
                pred = tr.predict(t)
                for k, c in enumerate(free):
                    dist = np.linalg.norm((pred[:2] + pred[2:] / 2) - (boxes[c, :2] + boxes[c, 2:] / 2)) / tr.box[2]
                    size_ratio = np.sqrt(boxes[c, 2] * boxes[c, 3] / max(tr.box[2] * tr.box[3], 1.0))
                    if dist <= self.max_jump and 2 / 3 < size_ratio < 1.5:
                        cost[r, k] = dist
            for r, k in assign(np.where(np.isfinite(cost), cost, 1e9), self.max_jump):
                ids[free[k]] = jumped[r].track_id
        matched = {i for i in ids if i is not None}
        free = [c for c, i in enumerate(ids) if i is None]
        lost = [tr for tr in alive if tr.track_id not in matched and tr.feature is not None]
        if free and lost and frame_bgr is not None:
            sim = np.array([[float(tr.feature @ feats[c]) for c in free] for tr in lost])  # (L, F)
            for r, tr in enumerate(lost):
                for k, c in enumerate(free):
                    centre_d = np.linalg.norm((tr.box[:2] + tr.box[2:] / 2) - (boxes[c, :2] + boxes[c, 2:] / 2))
                    size_ratio = np.sqrt(boxes[c, 2] * boxes[c, 3] / max(tr.box[2] * tr.box[3], 1.0))
                    if centre_d > self.max_reid_distance * tr.box[2] or not 0.5 < size_ratio < 2.0:
                        sim[r, k] = -1.0
            for r, k in assign(1.0 - sim, 1.0 - self.appearance_threshold):
                ids[free[k]] = lost[r].track_id
                self._reid += 1
        for c, tid in enumerate(ids):
            if tid is None:
                ids[c] = self._new_track(t, boxes[c], feats[c]).track_id
            else:
                self.tracks[tid].update(t, boxes[c], feats[c], self.momentum)
        return [int(i) for i in ids]

    @property
    def next_id(self) -> int:
        """The id the next new track gets."""
        return self._next_id

    def min_duration(self) -> float:
        """Effective minimum track length: `min_track_s`, relaxed for clips shorter than twice that."""
        span = self._last_t - (self._first_t or 0.0)
        return min(self.min_track_s, 0.5 * span)

    def finish(self) -> TrackerStats:
        """Split tracks into kept and dropped (shorter than `min_duration()`)."""
        keep = self.min_duration()
        kept = {i: tr for i, tr in self.tracks.items() if tr.duration_s >= keep}
        dropped = {i: tr for i, tr in self.tracks.items() if i not in kept}
        return TrackerStats(kept, dropped, self._reid)
