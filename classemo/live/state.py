"""The live lesson's state: what the teacher's page shows each second, from the rows a stream's windows produce.

It reads the rows that `classemo analyze` writes to timeline.parquet (`classemo.video.stages.WindowAssembler`) and
scores them with the same Table 3/4 measures (`classemo.analytics`) over sliding windows, so a live lesson and its
recording read alike. Times are the stream's own (seconds since it started), never the wall clock, so a replayed file
and a camera behave the same. Plain Python: the `classemo live` loop and a Serve stream actor both feed it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from classemo.analytics import PROB_PREFIX, AnalyticsConfig, row_scores, segment_metrics
from classemo.faces.reading import STATE_NAMES
from classemo.labels import LabelSet

ALERT_KINDS = ("students_negative", "classroom_low")


@dataclass(frozen=True)
class AlertRule:
    """One alert, raised once its condition has held for `for_s` seconds and cleared as soon as it stops.

    `students_negative`: at least `count` students whose negative facial activity over the person window is at or
    above `threshold`. `classroom_low`: classroom emotional activity over the classroom window under `threshold`.
    """

    name: str
    kind: str
    threshold: float
    for_s: float
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert {self.name!r}: kind must be one of {ALERT_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.threshold <= 1.0 or self.for_s < 0 or self.count < 1:
            raise ValueError(f"alert {self.name!r}: threshold must be in [0, 1], for_s >= 0 and count >= 1")


DEFAULT_ALERTS = (
    AlertRule("students negative", "students_negative", threshold=0.5, for_s=60.0, count=5),
    AlertRule("classroom activity low", "classroom_low", threshold=0.2, for_s=120.0),
)


@dataclass(frozen=True)
class LiveConfig:
    """Window lengths of the live state (seconds of stream time) and its alerts."""

    person_window_s: float = 60.0  # each person's positive/negative activity over the last minute
    classroom_window_s: float = 60.0  # classroom activity, rating and evaluations over this window
    sparkline_step_s: float = 5.0  # one sparkline point per step over the person window
    gone_after_s: float = 10.0  # a person unseen this long leaves the grid (the report keeps them)
    no_faces_after_s: float = 5.0  # no face detected for this long: the page says "no faces", not stale state
    roles_after_s: float = 30.0  # the auto teacher rule names nobody before this much of the lesson has been seen
    alerts: tuple[AlertRule, ...] = DEFAULT_ALERTS

    def __post_init__(self) -> None:
        for name in ("person_window_s", "classroom_window_s", "sparkline_step_s", "gone_after_s",
                     "no_faces_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"live.{name} must be a positive number of seconds, got {value!r}")
        if not (math.isfinite(self.roles_after_s) and self.roles_after_s >= 0):
            raise ValueError(f"live.roles_after_s must be >= 0 seconds, got {self.roles_after_s!r}")


@dataclass
class _AlertTrack:
    since: float | None = None  # stream time the condition started to hold
    active: bool = False


@dataclass
class LiveState:
    """Sliding-window state of one classroom stream.

    Feed it with `add_rows` (timeline rows, in any order within a few seconds), `note_faces` (each analysed frame's
    face count) and `set_roles` (the teacher as `assign_roles` finds them); read it with `snapshot`.
    """

    labels: LabelSet
    config: LiveConfig = field(default_factory=LiveConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)

    def __post_init__(self) -> None:
        self._rows: deque[dict] = deque()
        self._roles: dict[int, str] = {}
        self._last_face_t: float | None = None
        self._alerts = {rule.name: _AlertTrack() for rule in self.config.alerts}
        self.alert_log: list[dict] = []  # every alert raised, with when it started and (later) ended
        self._horizon = max(self.config.person_window_s, self.config.classroom_window_s)

    def add_rows(self, rows: list[dict]) -> None:
        """Window rows (track, time, label, p_<label>..., valence, arousal) as `WindowAssembler` makes them."""
        self._rows.extend(rows)

    def note_faces(self, t: float, count: int) -> None:
        """An analysed frame at stream time `t` held `count` faces."""
        if count > 0:
            self._last_face_t = t if self._last_face_t is None else max(self._last_face_t, t)

    def set_roles(self, roles: dict[int, str]) -> None:
        """Track id -> "teacher" or "student"; tracks not named are students."""
        self._roles = dict(roles)

    def snapshot(self, now: float) -> dict:
        """The page's state at stream time `now`: people, classroom measures, active alerts, "no faces"."""
        while self._rows and self._rows[0]["time"] < now - self._horizon:
            self._rows.popleft()
        rows = [r for r in self._rows if r["time"] <= now]
        no_faces = self._last_face_t is None or now - self._last_face_t > self.config.no_faces_after_s
        people = [] if no_faces else self._people(rows, now)
        classroom = self._classroom(rows, now)
        alerts = self._update_alerts(people, classroom, now)
        return {"time": now, "no_faces": no_faces, "people": people,
                "classroom": {k: classroom[k] for k in ("teacher_activity", "student_positive", "student_negative",
                                                        "classroom_activity", "effectiveness", "rating",
                                                        "teacher_evaluation", "student_evaluation",
                                                        "classroom_evaluation", "readable_share",
                                                        "attention")},
                "teacher": classroom["teacher"], "alerts": alerts, "alert_log": list(self.alert_log[-20:])}

    # ---- parts of a snapshot ------------------------------------------------------------------------------------

    def _frame(self, rows: list[dict]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=["track", "time", "label", "valence", "arousal", "attention", "readable",
                                         *[f"{PROB_PREFIX}{n}" for n in self.labels.names]])
        # Rows made before readability existed read as readable, with their pose unknown.
        df["attention"] = df["attention"].astype(object).where(df["attention"].notna(), "unknown")
        df["readable"] = df["readable"].astype(object).where(df["readable"].notna(), True).astype(bool)
        df["role"] = [self._roles.get(int(t), "student") for t in df["track"]]
        return df

    def _people(self, rows: list[dict], now: float) -> list[dict]:
        cfg = self.config
        recent = [r for r in rows if r["time"] >= now - cfg.person_window_s]
        by_track: dict[int, list[dict]] = {}
        for r in recent:
            by_track.setdefault(int(r["track"]), []).append(r)
        names = list(self.labels.names)
        steps = max(1, int(round(cfg.person_window_s / cfg.sparkline_step_s)))
        people = []
        for tid, rs in sorted(by_track.items()):
            rs.sort(key=lambda r: r["time"])
            last = rs[-1]
            if now - last["time"] > cfg.gone_after_s:
                continue
            probs = np.array([[r[f"{PROB_PREFIX}{n}"] for n in names] for r in rs])
            attention = np.array([r.get("attention", "unknown") for r in rs])
            readable = np.array([r.get("readable", True) for r in rs], dtype=bool)
            s = row_scores(probs, np.array([r["valence"] for r in rs]), np.array([r["arousal"] for r in rs]),
                           self.labels, self.analytics, attention)
            times = np.array([r["time"] for r in rs])
            # Sparkline: the mean of each step of the window over readable rows, None where none was.
            edges = now - cfg.person_window_s + cfg.sparkline_step_s * np.arange(steps + 1)
            spark = []
            for a, b in zip(edges[:-1], edges[1:]):
                m = (times >= a) & (times < b if b < now else times <= b) & readable
                spark.append([float(s["positive"][m].mean()), float(s["negative"][m].mean())] if m.any() else None)
            state = str(last.get("attention", "unknown"))
            read_now = bool(last.get("readable", True))
            people.append({"track": tid, "role": self._roles.get(tid, "student"),
                           # An unreadable face shows why rather than an emotion it was not seen to have.
                           "label": last["label"] if read_now else "unread",
                           "prob": float(last[f"{PROB_PREFIX}{last['label']}"]) if read_now else None,
                           "unread_reason": "" if read_now else str(last.get("unread_reason", "")),
                           "attention": state, "attention_text": STATE_NAMES.get(state, state),
                           "valence": float(last["valence"]), "arousal": float(last["arousal"]),
                           "positive": float(s["positive"][readable].mean()) if readable.any() else None,
                           "negative": float(s["negative"][readable].mean()) if readable.any() else None,
                           "last_seen": float(last["time"]), "sparkline": spark})
        return people

    def _classroom(self, rows: list[dict], now: float) -> dict:
        window = [r for r in rows if r["time"] >= now - self.config.classroom_window_s]
        return segment_metrics(self._frame(window), self.labels, self.analytics)

    def _update_alerts(self, people: list[dict], classroom: dict, now: float) -> list[dict]:
        active = []
        for rule in self.config.alerts:
            holds, detail = self._condition(rule, people, classroom)
            track = self._alerts[rule.name]
            if not holds:
                if track.active:
                    self.alert_log[-1 - self._open_index(rule.name)]["ended"] = now
                track.since, track.active = None, False
                continue
            track.since = now if track.since is None else track.since
            if now - track.since >= rule.for_s:
                if not track.active:
                    self.alert_log.append({"name": rule.name, "kind": rule.kind, "since": track.since,
                                           "raised": now, "ended": None, "message": detail})
                    track.active = True
                active.append({"name": rule.name, "kind": rule.kind, "since": track.since, "message": detail})
        return active

    def _open_index(self, name: str) -> int:
        """Position from the end of the alert log of the still-open entry of alert `name`."""
        for i, entry in enumerate(reversed(self.alert_log)):
            if entry["name"] == name and entry["ended"] is None:
                return i
        raise KeyError(name)

    def _condition(self, rule: AlertRule, people: list[dict], classroom: dict) -> tuple[bool, str]:
        if rule.kind == "students_negative":
            negative = [p["track"] for p in people if p["role"] != "teacher" and p["negative"] is not None
                        and p["negative"] >= rule.threshold]
            return (len(negative) >= rule.count,
                    f"{len(negative)} students negative (>= {rule.threshold:.2f}) for over {rule.for_s:.0f} s: "
                    f"{', '.join(map(str, negative))}")
        value = classroom["classroom_activity"]
        return (value is not None and value < rule.threshold,
                f"classroom activity {value if value is not None else float('nan'):.2f} under {rule.threshold:.2f} "
                f"for over {rule.for_s:.0f} s")


class FaceThumbnails:
    """Each person's newest face crop, as a small JPEG data URL for their tile: only with `--show-faces`.

    Off by default: the page then shows no face and nothing of one is kept. On, the newest crop per person is held in
    memory (one per track, replaced as the next comes) and encoded only when a state is sent; nothing goes to disk.
    """

    def __init__(self, size: int = 64, quality: int = 80) -> None:
        self.size, self.quality = size, quality
        self._latest: dict[int, np.ndarray] = {}

    def add(self, crops: list[np.ndarray], tracks: list[int]) -> None:
        """Keep the last crop of each track among `crops` (RGB uint8, as `FaceChunk.crops`)."""
        for crop, tid in zip(crops, tracks):
            self._latest[int(tid)] = crop

    def attach(self, people: list[dict]) -> None:
        """Set `face` (a data URL, or None when no crop was seen) on each person of a snapshot."""
        import base64

        import cv2

        for p in people:
            crop = self._latest.get(int(p["track"]))
            if crop is None:
                p["face"] = None
                continue
            small = cv2.resize(np.ascontiguousarray(crop), (self.size, self.size), interpolation=cv2.INTER_AREA)
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            p["face"] = "data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode() if ok else None

    def forget(self, keep: set[int]) -> None:
        """Drop the crops of tracks no longer on the page."""
        for tid in set(self._latest) - keep:
            del self._latest[tid]
