"""Classroom analytics (the paper's Tables 3 and 4) from per-window readings, attention and valence/arousal.

The paper names these measures but gives no formulas; ours are in docs/analytics.md. Every score is a convex
combination of quantities in [0, 1], so it is bounded in [0, 1] by construction. Inputs per timeline row (one
track, one window): calibrated class probabilities p (sum 1), valence V and arousal A in [-1, 1], the label polarity
from the model's LabelSet, and from the face path whether the face could be read and where it looked.

Each readable row gets one reading: the polarity (positive, negative, neutral) of its most likely class when that
class is at least `min_confidence` likely, else neutral. A hesitant model spreads its mass over the four negative
classes, so summing masses called a doubtful neutral face "negative"; a reading counts it as what it most likely is.
The emotion measures are shares of readable time in each reading; unreadable rows (looking down, turned away, too
small or blurred) stay in the timeline, flagged, and are left out of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from classemo.labels import LabelSet

PROB_PREFIX = "p_"
ATTENTION_KEYS = ("front", "down", "away")  # shares of the windows whose pose could be told


@dataclass(frozen=True)
class AnalyticsConfig:
    """Weights and thresholds of the classroom measures (docs/analytics.md explains each)."""

    activity_expr_weight: float = 0.5  # facial activity: weight of expressiveness (share not neutral) vs arousal
    min_confidence: float = 0.5  # a reading below this calibrated top-class probability counts as neutral ...
    down_min_confidence: float = 0.8  # ... and below this for a face looking down (a bowed head reads as sad)
    classroom_pos_weight: float = 0.5  # classroom activity: positive mass counts fully ...
    classroom_neg_weight: float = 0.25  # ... negative mass half (engaged but struggling) ...
    classroom_arousal_weight: float = 0.25  # ... and arousal supplies the rest; the three sum to 1
    eff_teacher_weight: float = 0.2  # teaching effectiveness = teacher activity ...
    eff_classroom_weight: float = 0.5  # ... + classroom activity (the students weigh most) ...
    eff_balance_weight: float = 0.3  # ... + student balance (P+ - P- + 1) / 2; the three sum to 1
    excellent: float = 0.6  # effectiveness thresholds
    good: float = 0.45
    average: float = 0.3
    active: float = 0.5  # emotional evaluation: Active at or above this ...
    normal: float = 0.3  # ... Normal at or above this, else Average

    def __post_init__(self) -> None:
        for name, group in (("classroom", (self.classroom_pos_weight, self.classroom_neg_weight,
                                           self.classroom_arousal_weight)),
                            ("effectiveness", (self.eff_teacher_weight, self.eff_classroom_weight,
                                               self.eff_balance_weight))):
            if any(w < 0 for w in group) or not math.isclose(sum(group), 1.0, abs_tol=1e-6):
                raise ValueError(f"{name} weights must be >= 0 and sum to 1 (keeps the score in [0, 1]), got {group}")
        for name in ("activity_expr_weight", "min_confidence", "down_min_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.excellent >= self.good >= self.average:
            raise ValueError("effectiveness thresholds must satisfy excellent >= good >= average")
        if not self.active >= self.normal:
            raise ValueError("evaluation thresholds must satisfy active >= normal")


def readings(probs: np.ndarray, label_set: LabelSet, cfg: AnalyticsConfig,
             attention: np.ndarray | None = None) -> np.ndarray:
    """(N,) "positive", "negative" or "neutral" per row of (N, C) probabilities: the top class's polarity where its
    probability is at least `cfg.min_confidence` (`cfg.down_min_confidence` for rows whose `attention` is "down"),
    else neutral: a hesitant reading is not a quarter of each class."""
    probs = np.asarray(probs, dtype=float).reshape(-1, len(label_set))
    if not len(probs):
        return np.zeros(0, dtype="<U8")
    pol = np.array([label_set.polarity[n] for n in label_set.names])
    need = np.full(len(probs), cfg.min_confidence)
    if attention is not None:
        need[np.asarray(attention) == "down"] = cfg.down_min_confidence
    return np.where(probs.max(axis=1) >= need, pol[probs.argmax(axis=1)], "neutral")


def readable_mask(df: pd.DataFrame) -> np.ndarray:
    """(N,) bool: rows whose face could be read. Timelines written before readability existed read as all readable."""
    if "readable" not in df:
        return np.ones(len(df), dtype=bool)
    return df["readable"].to_numpy(dtype=bool)


def _unit(x: np.ndarray) -> np.ndarray:
    """Map [-1, 1] to [0, 1]; clipped because a model's tanh head can sit a hair outside after float error."""
    return np.clip((np.asarray(x, dtype=float) + 1.0) / 2.0, 0.0, 1.0)


def row_scores(probs: np.ndarray, valence: np.ndarray, arousal: np.ndarray, label_set: LabelSet,
               cfg: AnalyticsConfig, attention: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-row scores in [0, 1] of readable rows: facial activity, positive and negative reading (0 or 1; their means
    are shares of readable time), neutral reading and classroom activity."""
    reading = readings(probs, label_set, cfg, attention)
    pos, neg = (reading == "positive").astype(float), (reading == "negative").astype(float)
    neu = (reading == "neutral").astype(float)
    a01 = _unit(arousal)
    w = cfg.activity_expr_weight
    return {
        "activity": w * (1.0 - neu) + (1 - w) * a01,
        "positive": pos,
        "negative": neg,
        "neutral": neu,
        "classroom": cfg.classroom_pos_weight * pos + cfg.classroom_neg_weight * neg
        + cfg.classroom_arousal_weight * a01,
    }


def effectiveness_rating(score: float | None, cfg: AnalyticsConfig) -> str | None:
    """Excellent / Good / Average / Poor from the teaching-effectiveness score (None when there is no data)."""
    if score is None:
        return None
    if score >= cfg.excellent:
        return "Excellent"
    if score >= cfg.good:
        return "Good"
    if score >= cfg.average:
        return "Average"
    return "Poor"


def evaluation(score: float | None, cfg: AnalyticsConfig) -> str | None:
    """Active / Normal / Average emotional evaluation (the paper's Table 4 wording); None when there is no data."""
    if score is None:
        return None
    if score >= cfg.active:
        return "Active"
    if score >= cfg.normal:
        return "Normal"
    return "Average"


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def segment_metrics(df: pd.DataFrame, label_set: LabelSet, cfg: AnalyticsConfig) -> dict:
    """Table 3 and 4 measures for the rows of one segment (or the whole video).

    Students are averaged per person first, so one student seen for longer does not outweigh the others.
    Returns None for measures without data (no teacher, or no students) rather than inventing a value.
    """
    out: dict = {"num_rows": int(len(df)), "teacher": None, "students": {}}
    if len(df) == 0:
        out.update(teacher_activity=None, student_positive=None, student_negative=None, student_neutral=None,
                   classroom_activity=None, effectiveness=None, rating=None, teacher_evaluation=None,
                   student_evaluation=None, classroom_evaluation=None, readable_share=None,
                   attention=dict.fromkeys(ATTENTION_KEYS))
        return out
    probs = df[[f"{PROB_PREFIX}{n}" for n in label_set.names]].to_numpy(float)
    attention = df["attention"].to_numpy(str) if "attention" in df else np.full(len(df), "unknown")
    s = row_scores(probs, df["valence"].to_numpy(), df["arousal"].to_numpy(), label_set, cfg, attention)
    readable = readable_mask(df)
    tracks = df["track"].to_numpy()
    roles = df["role"].to_numpy()
    teacher_mask = roles == "teacher"
    teacher_activity = _mean(s["activity"][teacher_mask & readable])
    if teacher_mask.any():
        out["teacher"] = int(tracks[teacher_mask][0])
    per_student = {}
    for tid in sorted(set(tracks[~teacher_mask].tolist())):
        m = tracks == tid
        r = m & readable
        seen = m & (attention != "unknown")
        per_student[int(tid)] = {
            **{k: (float(np.mean(s[k][r])) if r.any() else None)
               for k in ("activity", "positive", "negative", "neutral", "classroom")},
            "readable": float(r.sum() / m.sum()),
            "attention": {k: (float(np.mean(attention[seen] == k)) if seen.any() else None) for k in ATTENTION_KEYS},
        }
    out["students"] = {str(k): {"positive_activity": v["positive"], "negative_activity": v["negative"],
                                "neutral_share": v["neutral"], "facial_activity": v["activity"],
                                "readable_share": v["readable"], "attention": v["attention"]}
                       for k, v in per_student.items()}
    stu = list(per_student.values())
    read = [v for v in stu if v["positive"] is not None]  # students with at least one readable window

    def over(values: list[dict], key: str) -> float | None:
        return _mean(np.array([v[key] for v in values], dtype=float))

    student_pos, student_neg, student_neu = over(read, "positive"), over(read, "negative"), over(read, "neutral")
    student_act, classroom = over(read, "activity"), over(read, "classroom")
    balance = _mean(np.array([(v["positive"] - v["negative"] + 1) / 2 for v in read]))
    class_attention = {k: _mean(np.array([v["attention"][k] for v in stu if v["attention"][k] is not None]))
                       for k in ATTENTION_KEYS}
    # A lesson filmed without the teacher in view still gets a rating from the students alone: the teacher term's
    # weight is moved to the classroom term rather than scoring the missing teacher as 0.
    if classroom is None:
        effectiveness = None
    elif teacher_activity is None:
        effectiveness = (cfg.eff_classroom_weight + cfg.eff_teacher_weight) * classroom \
            + cfg.eff_balance_weight * balance
    else:
        effectiveness = cfg.eff_teacher_weight * teacher_activity + cfg.eff_classroom_weight * classroom \
            + cfg.eff_balance_weight * balance
    out.update(
        teacher_activity=teacher_activity,
        student_positive=student_pos,
        student_negative=student_neg,
        student_neutral=student_neu,
        classroom_activity=classroom,
        effectiveness=effectiveness,
        rating=effectiveness_rating(effectiveness, cfg),
        teacher_evaluation=evaluation(teacher_activity, cfg),
        student_evaluation=evaluation(student_act, cfg),
        classroom_evaluation=evaluation(classroom, cfg),
        readable_share=over(stu, "readable"),
        attention=class_attention,
    )
    return out


def segment_bounds(duration_s: float, segment_s: float) -> list[tuple[float, float]]:
    """Consecutive [start, end) segments covering [0, duration_s]; a zero-length video is one zero-length segment.

    Raises:
        ValueError: if segment_s is not a positive number.
    """
    if not (isinstance(segment_s, (int, float)) and math.isfinite(segment_s) and segment_s > 0):
        raise ValueError(f"segment length must be a positive number of seconds, got {segment_s!r}")
    duration_s = max(float(duration_s), 0.0)
    n = max(1, math.ceil(duration_s / segment_s - 1e-9))
    return [(i * segment_s, min((i + 1) * segment_s, duration_s)) for i in range(n)]


def summarize(timeline: pd.DataFrame, label_set: LabelSet, *, duration_s: float, segment_s: float = 60.0,
              cfg: AnalyticsConfig | None = None) -> dict:
    """Overall and per-segment Table 3/4 measures for a timeline (columns track, role, time, p_<label>, valence,
    arousal).

    Rows are assigned to the segment holding their `time`; the last segment is closed, so a row at the very end
    is kept.
    """
    cfg = cfg or AnalyticsConfig()
    bounds = segment_bounds(duration_s, segment_s)
    segments = []
    times = timeline["time"].to_numpy(float) if len(timeline) else np.zeros(0)
    for i, (start, end) in enumerate(bounds):
        last = i == len(bounds) - 1
        m = (times >= start) & ((times <= end) if last else (times < end))
        seg = segment_metrics(timeline[m], label_set, cfg)
        segments.append({"index": i, "start_s": start, "end_s": end, **seg})
    return {
        "config": asdict(cfg),
        "labels": label_set.to_list(),
        "segment_s": segment_s,
        "duration_s": duration_s,
        "overall": segment_metrics(timeline, label_set, cfg),
        "segments": segments,
    }
