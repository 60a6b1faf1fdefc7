"""Synthetic classroom videos with known truth: one teacher and N students, each with an expression trajectory.

Three scenario presets mirror the paper's Table 3 (lively, difficult, dull). Frames are drawn and written one at
a time (cv2.VideoWriter, 'mp4v'), so memory does not grow with the length of the video. The ground truth (per
person: role, face box, label, valence/arousal and a visible flag per frame) is returned and written as JSON
beside the mp4. See docs/synthetic-data.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from classemo.labels import LabelSet
from classemo.synth.draw import draw_person
from classemo.synth.face import FaceIdentity, Pose, action_vector
from classemo.synth.render import SUPERSAMPLE

CLASSROOM_VERSION = "synth-classroom/1"
VISIBLE_MIN_INTENSITY = 0.2  # below this the frame's label is "neutral": the expression is not yet readable


@dataclass(frozen=True)
class RoleProfile:
    """How one role behaves in a scenario: which expressions, how strong, and the resting mood."""

    labels: dict[str, float]  # label -> probability of an expression episode showing it
    intensity: tuple[float, float]  # apex intensity range of an episode
    episode_s: tuple[float, float]  # episode length range, seconds
    gap_s: tuple[float, float]  # neutral time between episodes, seconds
    mood_va: tuple[float, float]  # resting valence/arousal offset (tired: low arousal; energetic: high)
    eye_open: float  # resting lid aperture offset: sleepy faces narrow the eyes
    motion: float  # head sway / walking speed multiplier
    away_per_min: float  # turning away or hiding the face, events per minute


@dataclass(frozen=True)
class Scenario:
    """A classroom preset: the teacher's and the students' profiles."""

    teacher: RoleProfile
    students: RoleProfile


SCENARIOS: dict[str, Scenario] = {
    "lively": Scenario(
        teacher=RoleProfile({"happy": 0.5, "positive": 0.4, "neutral": 0.1}, (0.6, 1.0), (1.5, 3.0), (0.3, 1.0),
                            (0.15, 0.25), 0.15, 1.6, 2.0),
        students=RoleProfile({"happy": 0.4, "positive": 0.4, "neutral": 0.15, "fear": 0.05}, (0.5, 1.0),
                             (1.5, 3.5), (0.5, 2.0), (0.1, 0.2), 0.1, 1.3, 3.0),
    ),
    "difficult": Scenario(
        teacher=RoleProfile({"neutral": 0.35, "positive": 0.25, "anger": 0.2, "sad": 0.2}, (0.4, 0.9), (1.5, 3.5),
                            (0.5, 2.0), (-0.05, 0.1), 0.0, 1.0, 2.0),
        students=RoleProfile({"fear": 0.2, "sad": 0.2, "anger": 0.15, "disgust": 0.15, "neutral": 0.2,
                              "positive": 0.1}, (0.5, 1.0), (1.5, 3.5), (0.5, 2.0), (-0.1, 0.05), 0.0, 1.0, 4.0),
    ),
    "dull": Scenario(
        teacher=RoleProfile({"neutral": 0.6, "sad": 0.4}, (0.2, 0.5), (2.0, 5.0), (1.0, 3.0), (-0.1, -0.3), -0.35,
                            0.4, 1.0),
        students=RoleProfile({"neutral": 0.6, "sad": 0.4}, (0.15, 0.45), (2.0, 5.0), (1.0, 3.0), (-0.1, -0.35),
                             -0.45, 0.5, 3.0),
    ),
}


@dataclass
class _Person:
    pid: str
    role: str
    ident: FaceIdentity
    home: tuple[float, float]  # face centre at rest, px
    radius: float  # face half-height, px
    labels: list[str]  # per frame, the truth
    drawn: list[str]  # per frame, the expression being drawn (the episode's, also below the readable level)
    intensity: np.ndarray  # (T,)
    valence: np.ndarray  # (T,)
    arousal: np.ndarray  # (T,)
    away: np.ndarray  # (T,) 0 visible, 1 turned away, 2 face occluded
    phase: float  # random phase of the person's motion, radians
    speed: float  # motion speed multiplier
    eye_open: float  # resting lid aperture offset
    clip_top: int  # rows above this are not drawn on (the teacher stays in front of the board)
    clip_bottom: int


def expression_trajectory(profile: RoleProfile, labels: LabelSet, num_frames: int, fps: float,
                          rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Episodes of expressions separated by neutral gaps; each episode rises to an apex and decays (sin^2).

    Returns:
        `(labels, drawn, intensity, valence, arousal)` per frame: the truth label ("neutral" while the intensity is
        below `VISIBLE_MIN_INTENSITY`), the expression being drawn, its intensity, and the frame V/A.
    """
    names = list(profile.labels)
    probs = np.array([profile.labels[n] for n in names], dtype=np.float64)
    probs /= probs.sum()
    intensity = np.zeros(num_frames)
    drawn = ["neutral"] * num_frames
    t = int(rng.uniform(0, profile.gap_s[1]) * fps)
    while t < num_frames:
        length = max(3, int(rng.uniform(*profile.episode_s) * fps))
        label = names[int(rng.choice(len(names), p=probs))]
        apex = float(rng.uniform(*profile.intensity))
        end = min(num_frames, t + length)
        course = apex * np.sin(np.pi * (np.arange(t, end) - t + 0.5) / length) ** 2
        intensity[t:end] = course
        drawn[t:end] = [label] * (end - t)
        t = end + int(rng.uniform(*profile.gap_s) * fps)
    truth = [d if (d != "neutral" and i >= VISIBLE_MIN_INTENSITY) else "neutral" for d, i in zip(drawn, intensity)]
    va = np.array([labels.default_va[d] for d in drawn])  # (T, 2)
    # Frame V/A: the resting mood, moved toward the expression's V/A in step with its intensity.
    mood = np.array(profile.mood_va) + rng.normal(0, 0.03, 2)
    valence = np.clip(mood[0] * (1 - intensity) + va[:, 0] * intensity, -1, 1)
    arousal = np.clip(mood[1] * (1 - intensity) + va[:, 1] * intensity, -1, 1)
    return truth, drawn, intensity, valence, arousal


def _away_events(profile: RoleProfile, num_frames: int, fps: float, rng: np.random.Generator,
                 kinds: tuple[int, ...]) -> np.ndarray:
    """Per frame: 0 visible, 1 turned away, 2 face hidden behind a book; events are Poisson, 0.4-1.2 s long."""
    away = np.zeros(num_frames, dtype=np.int8)
    expected = profile.away_per_min * num_frames / fps / 60.0
    for _ in range(int(rng.poisson(expected))):
        start = int(rng.integers(0, num_frames))
        away[start:start + max(1, int(rng.uniform(0.4, 1.2) * fps))] = kinds[int(rng.integers(len(kinds)))]
    return away


def _room(w: int, h: int, rng: np.random.Generator, board_bottom: int) -> np.ndarray:
    """Static background: wall, blackboard with chalk scribbles, windows, floor."""
    wall = rng.uniform(150, 215, 3)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = wall.astype(np.uint8)
    img[int(0.62 * h):] = (wall * 0.7).astype(np.uint8)
    x0, x1 = int(0.12 * w), int(0.88 * w)
    cv2.rectangle(img, (x0, int(0.04 * h)), (x1, board_bottom), (45, 70, 40), -1)
    cv2.rectangle(img, (x0, int(0.04 * h)), (x1, board_bottom), (60, 90, 120), max(2, w // 200))
    for _ in range(8):
        y = int(rng.uniform(0.07, 0.3) * h)
        xa = int(rng.uniform(x0 + 10, x1 - 120))
        cv2.line(img, (xa, y), (xa + int(rng.uniform(40, 110)), y + int(rng.integers(-4, 5))), (210, 215, 215), 2,
                 cv2.LINE_AA)
    for xw in (0.02, 0.92):
        cv2.rectangle(img, (int(xw * w), int(0.08 * h)), (int((xw + 0.06) * w), int(0.35 * h)), (235, 225, 200), -1)
    return img


def _layout(num_students: int, w: int, h: int) -> list[tuple[float, float, float]]:
    """(x, y, radius) of each student's face at rest: rows from the back (small, high) to the front (large, low).

    Up to 24 students sit six to a row; a larger class fills four rows, with narrower seats and smaller faces."""
    per_row = min(num_students, max(6, math.ceil(num_students / 4)))
    rows = math.ceil(num_students / per_row)
    shrink = min(1.0, 6 / per_row)
    out = []
    for k in range(num_students):
        r, c = divmod(k, per_row)
        in_row = min(per_row, num_students - r * per_row)
        depth = r / max(rows - 1, 1)  # 0 back .. 1 front
        y = h * (0.52 + 0.28 * depth) if rows > 1 else h * 0.62
        radius = h * (0.048 + 0.022 * depth) * shrink
        stagger = 0.5 * (r % 2) / per_row
        x = w * ((c + 0.5) / in_row * 0.9 + 0.05 + stagger * 0.5)
        out.append((x, y, radius))
    return out


def _draw(frame: np.ndarray, p: _Person, t: int, fps: float) -> tuple[float, float, float]:
    """Draw person p at frame t onto the frame (supersampled in a local patch); return the face centre and radius."""
    h, w = frame.shape[:2]
    sec = t / fps
    if p.role == "teacher":
        # Walks back and forth along the front; the pace follows the scenario's energy.
        cx = p.home[0] + 0.33 * w * math.sin(0.35 * sec * p.speed + p.phase)
        cy = p.home[1] + 0.01 * h * math.sin(2.1 * sec * p.speed)
        angle = 4.0 * math.sin(1.3 * sec * p.speed + p.phase)
        yaw = 0.4 * math.cos(0.35 * sec * p.speed + p.phase)
    else:
        cx = p.home[0] + 0.06 * p.radius * math.sin(0.9 * p.speed * sec + p.phase)
        cy = p.home[1] + 0.04 * p.radius * math.sin(1.3 * p.speed * sec + 2 * p.phase)
        angle = 5.0 * math.sin(0.7 * p.speed * sec + 3 * p.phase)
        yaw = 0.3 * math.sin(0.5 * p.speed * sec + p.phase)
    r = p.radius
    x0, x1 = int(max(0, cx - 2.2 * r)), int(min(w, cx + 2.2 * r))
    y0, y1 = int(max(p.clip_top, cy - 1.5 * r)), int(min(p.clip_bottom, cy + 3.6 * r))
    if x1 <= x0 or y1 <= y0:
        return cx, cy, r
    s = SUPERSAMPLE
    patch = cv2.resize(frame[y0:y1, x0:x1], None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    extra = {"eye_open": p.eye_open}
    actions = action_vector(p.drawn[t], float(p.intensity[t]), identity=p.ident, extra=extra)
    pose = Pose(cx=(cx - x0) * s, cy=(cy - y0) * s, radius=r * s, angle=angle, yaw=yaw)
    draw_person(patch, p.ident, actions, pose, facing=p.away[t] != 1)
    if p.away[t] == 2:  # a raised book hides the face
        bx = (cx - x0 - 1.0 * r) * s, (cy - y0 - 0.45 * r) * s
        cv2.rectangle(patch, (int(bx[0]), int(bx[1])), (int(bx[0] + 2.0 * r * s), int(bx[1] + 2.2 * r * s)),
                      p.ident.shirt[::-1], -1, cv2.LINE_AA)
    frame[y0:y1, x0:x1] = cv2.resize(patch, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return cx, cy, r


def face_box(cx: float, cy: float, radius: float) -> list[float]:
    """Ground-truth face box [x, y, w, h] for a face centred at (cx, cy): where OpenCV's frontal Haar cascade puts it
    (measured: centre 0.05 radius below the face centre, side 2 radii)."""
    side = 2.0 * radius
    return [cx - radius, cy + 0.05 * radius - radius, side, side]


def make_classroom_video(path: str | Path, *, scenario: str = "lively", num_students: int = 8, seconds: float = 10.0,
                         fps: float = 10.0, seed: int = 0, size: tuple[int, int] = (960, 540),
                         progress: bool = False) -> dict:
    """Draw a classroom video and its ground truth.

    Args:
        path: Output .mp4 path; the ground truth goes to the same path with a .json suffix.
        scenario: 'lively', 'difficult' or 'dull' (the paper's Table 3 situations).
        num_students: Students in rows facing the camera (1..40).
        seconds: Video length.
        fps: Frame rate.
        seed: Same seed, same video and truth.
        size: (width, height) in pixels.
        progress: Show a tqdm bar over frames.

    Returns:
        The ground truth: scenario, fps, size, num_frames, labels and `people`, each with id, role, subject_id and
        per-frame `boxes` ([x, y, w, h] face boxes), `labels`, `valence`, `arousal`, `intensity` and `visible`.

    Raises:
        ValueError: unknown scenario or out-of-range arguments.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {sorted(SCENARIOS)}")
    if not 1 <= num_students <= 40:
        raise ValueError(f"num_students must be in 1..40, got {num_students}")
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be positive, got seconds={seconds}, fps={fps}")
    w, h = int(size[0]), int(size[1])
    if w < 320 or h < 180:
        raise ValueError(f"size must be at least 320x180, got {w}x{h}")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"the video path must end in .mp4, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    labels = LabelSet.paper()
    preset = SCENARIOS[scenario]
    rng = np.random.default_rng([seed, 11])
    num_frames = max(1, int(round(seconds * fps)))
    board_bottom = int(0.38 * h)
    room = _room(w, h, rng, board_bottom)
    desk = (40, 75, 110)
    people: list[_Person] = []
    slots = [(w * 0.5, h * 0.21, h * 0.1, "teacher")]
    slots += [(x, y, r, "student") for x, y, r in _layout(num_students, w, h)]
    for k, (x, y, r, role) in enumerate(slots):
        prof = preset.teacher if role == "teacher" else preset.students
        ident = FaceIdentity.random(rng, f"classroom-{seed}-{k:02d}")
        truth, drawn, inten, val, aro = expression_trajectory(prof, labels, num_frames, fps, rng)
        person = _Person(
            pid="teacher" if role == "teacher" else f"student-{k - 1:02d}", role=role, ident=ident, home=(x, y),
            radius=r, labels=truth, drawn=drawn, intensity=inten, valence=val, arousal=aro,
            away=_away_events(prof, num_frames, fps, rng, (1,) if role == "teacher" else (1, 2)),
            phase=float(rng.uniform(0, 2 * math.pi)),
            speed=prof.motion * float(rng.uniform(0.8, 1.2)), eye_open=prof.eye_open,
            clip_top=0, clip_bottom=board_bottom + int(0.06 * h) if role == "teacher" else h)
        people.append(person)

    truth_people = [{"id": p.pid, "role": p.role, "subject_id": p.ident.subject_id, "boxes": [], "labels": p.labels,
                     "valence": [round(float(v), 4) for v in p.valence],
                     "arousal": [round(float(v), 4) for v in p.arousal],
                     "intensity": [round(float(v), 4) for v in p.intensity],
                     "visible": [bool(a == 0) for a in p.away]} for p in people]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open a video writer for {path} (codec mp4v)")
    try:
        for t in tqdm(range(num_frames), desc=f"classroom {scenario}", unit="frame", disable=not progress):
            frame = room.copy()
            for p, tp in zip(people, truth_people):
                cx, cy, r = _draw(frame, p, t, fps)
                if p.role == "teacher":  # the front desk hides where the teacher's drawing is clipped
                    cv2.rectangle(frame, (0, p.clip_bottom - 2), (w, p.clip_bottom + int(0.025 * h)), desk, -1)
                tp["boxes"].append([round(v, 2) for v in face_box(cx, cy, r)])
            noise = rng.normal(0, 2.0, frame.shape).astype(np.float32)
            writer.write(np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    truth = {"generator": CLASSROOM_VERSION, "scenario": scenario, "fps": float(fps), "size": [w, h],
             "num_frames": num_frames, "seed": int(seed), "labels": labels.to_list(), "video": path.name,
             "people": truth_people}
    path.with_suffix(".json").write_text(json.dumps(truth))
    return truth
