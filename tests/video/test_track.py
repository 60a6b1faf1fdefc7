"""Tracker: stable IDs under motion and missed detections, re-identification after occlusion, short-track drops."""

from __future__ import annotations

import numpy as np

from classemo.video.track import Tracker, assign, iou_matrix


def patterned_frame(boxes: dict[int, np.ndarray], patterns: dict[int, np.ndarray]) -> np.ndarray:
    """A grey 360x640 frame with each person's fixed texture drawn in their box."""
    import cv2

    frame = np.full((360, 640, 3), 110, np.uint8)
    for pid, (x, y, w, h) in boxes.items():
        frame[int(y):int(y) + int(h), int(x):int(x) + int(w)] = cv2.resize(patterns[pid], (int(w), int(h)))
    return frame


def make_patterns(n: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    return {i: rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1) for i in range(n)}


def test_iou_and_assignment() -> None:
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10]], float)
    iou = iou_matrix(a, b)
    np.testing.assert_allclose(iou, [[50 / 150, 1.0], [0, 0]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)
    # Hungarian picks the global optimum; a greedy choice of the single best pair (0, 0) would be worse overall.
    cost = np.array([[0.1, 0.2], [0.15, 0.9]])
    assert sorted(assign(cost, 1.0)) == [(0, 1), (1, 0)]
    assert assign(cost, 0.12) == []  # pairs above the gate are not matched


def test_ids_stable_under_motion_and_misses() -> None:
    patterns = make_patterns(3)
    tracker = Tracker()
    rng = np.random.default_rng(0)
    seen: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for k in range(50):  # 10 s at 5 fps
        t = k * 0.2
        boxes = {0: np.array([40 + 10 * k, 60, 50, 50], float),  # walks right fast: 50 px/s, its width per second
                 1: np.array([300, 200, 40, 40], float),
                 2: np.array([500, 80 + 2 * k, 45, 45], float)}
        boxes = {p: b + rng.normal(0, 1.5, 4) * [1, 1, 0, 0] for p, b in boxes.items()}  # detector jitter
        visible = {p: b for p, b in boxes.items() if not (p == 1 and k % 4 == 2)}  # person 1 missed every 4th frame
        frame = patterned_frame(visible, patterns)
        order = list(visible)
        ids = tracker.update(t, np.stack([visible[p] for p in order]), frame)
        for p, tid in zip(order, ids):
            seen[p].add(tid)
    assert all(len(v) == 1 for v in seen.values()), seen
    stats = tracker.finish()
    assert sorted(stats.kept) == sorted(next(iter(v)) for v in seen.values()) and not stats.dropped
    mover = stats.kept[next(iter(seen[0]))]
    assert mover.mobility > 5 * stats.kept[next(iter(seen[1]))].mobility


def test_reidentified_after_occlusion_and_short_tracks_dropped() -> None:
    patterns = make_patterns(3)
    tracker = Tracker(max_lost_s=3.0, min_track_s=1.0)
    ids_a, ids_b = [], []
    for k in range(40):
        t = k * 0.2
        vis = {1: np.array([400, 150, 60, 60], float)}
        if not 10 <= k < 22:  # person 0 hidden for 2.4 s, and comes back 40 px (2/3 of a face) to the right
            vis[0] = np.array([100 + (40 if k >= 22 else 0), 100, 60, 60], float)
        if k == 5:  # a one-frame false detection (person 2's texture)
            vis[2] = np.array([250, 280, 40, 40], float)
        order = list(vis)
        ids = dict(zip(order, tracker.update(t, np.stack([vis[p] for p in order]), patterned_frame(vis, patterns))))
        if 0 in ids:
            ids_a.append(ids[0])
        ids_b.append(ids[1])
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1
    stats = tracker.finish()
    assert stats.reidentified == 1
    assert set(stats.kept) == {ids_a[0], ids_b[0]} and len(stats.dropped) == 1
    assert next(iter(stats.dropped.values())).hits == 1


def test_lost_too_long_starts_a_new_track() -> None:
    patterns = make_patterns(1)
    tracker = Tracker(max_lost_s=1.0)
    box = {0: np.array([100, 100, 60, 60], float)}
    first = tracker.update(0.0, box[0][None], patterned_frame(box, patterns))
    again = tracker.update(3.0, box[0][None], patterned_frame(box, patterns))
    assert first != again


def test_one_frame_video_keeps_its_faces() -> None:
    tracker = Tracker(min_track_s=1.0)
    tracker.update(0.0, np.array([[0, 0, 30, 30], [100, 0, 30, 30], [200, 0, 30, 30]], float))
    stats = tracker.finish()
    assert len(stats.kept) == 3 and not stats.dropped


def test_a_student_sitting_down_keeps_their_track() -> None:
    # classroom_intel.mp4 at 5 fps: a man sits down and his face drops most of a face height between two frames
    # (IoU with the predicted box 0.17, motion-blurred appearance 0.49): the jump gate keeps his one track.
    tracker = Tracker()
    neighbour = [75.0, 295.0, 47.0, 58.0]
    path = [[743, 175, 55, 64], [728, 181, 59, 71], [727, 194, 61, 66], [737, 211, 58, 66], [754, 266, 61, 70],
            [758, 309, 59, 68], [755, 313, 57, 70]]
    ids = [tracker.update(0.2 * i, np.array([box, neighbour], dtype=float)) for i, box in enumerate(path)]
    assert {i[0] for i in ids} == {0} and {i[1] for i in ids} == {1}
    # A face appearing far from any track (two face widths away) still starts its own.
    far = tracker.update(1.4, np.array([[755, 313, 57, 70], neighbour, [900, 313, 57, 70]], dtype=float))
    assert far == [0, 1, 2]
    off = Tracker(max_jump=0)
    assert len({off.update(0.2 * i, np.array([box], dtype=float))[0] for i, box in enumerate(path)}) > 1  # IoU alone
