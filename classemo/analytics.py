"""Classroom analytics (the paper's Tables 3 and 4) from per-window class probabilities and valence/arousal.

The paper names these measures but gives no formulas; ours are in docs/analytics.md. Every score is a convex
combination of quantities in [0, 1], so it is bounded in [0, 1] by construction. Inputs per timeline row (one
track, one window): class probabilities p (sum 1), valence V and arousal A in [-1, 1], and the label polarity from
the model's LabelSet, giving the positive, negative and neutral masses P+, P-, P0 = sum of p over each polarity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from classemo.labels import LabelSet

PROB_PREFIX = "p_"


@dataclass(frozen=True)
class AnalyticsConfig:
    """Weights and thresholds of the classroom measures (docs/analytics.md explains each)."""

    activity_expr_weight: float = 0.5  # teacher activity: weight of expressiveness (1 - P0) vs arousal
    va_weight: float = 0.3  # student positive/negative activity: weight of the valence sign vs class polarity
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
        for name in ("activity_expr_weight", "va_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.excellent >= self.good >= self.average:
            raise ValueError("effectiveness thresholds must satisfy excellent >= good >= average")
        if not self.active >= self.normal:
            raise ValueError("evaluation thresholds must satisfy active >= normal")


def polarity_masses(probs: np.ndarray, label_set: LabelSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P+, P-, P0 of (N, C) probabilities: the probability mass of positive, negative and neutral labels, each (N,)."""
    pol = np.array([label_set.polarity[n] for n in label_set.names])
    probs = np.asarray(probs, dtype=float).reshape(-1, len(label_set))
    pos, neg, neu = (probs[:, pol == k].sum(axis=1) for k in ("positive", "negative", "neutral"))
    return pos, neg, neu


def _unit(x: np.ndarray) -> np.ndarray:
    """Map [-1, 1] to [0, 1]; clipped because a model's tanh head can sit a hair outside after float error."""
    return np.clip((np.asarray(x, dtype=float) + 1.0) / 2.0, 0.0, 1.0)


def row_scores(probs: np.ndarray, valence: np.ndarray, arousal: np.ndarray, label_set: LabelSet,
               cfg: AnalyticsConfig) -> dict[str, np.ndarray]:
    """Per-row scores in [0, 1]: facial activity, positive activity, negative activity and classroom activity."""
    pos, neg, neu = polarity_masses(probs, label_set)
    v = np.clip(np.asarray(valence, dtype=float), -1, 1)
    a01 = _unit(arousal)
    w, lam = cfg.activity_expr_weight, cfg.va_weight
    return {
        "activity": w * (1.0 - neu) + (1 - w) * a01,
        "positive": (1 - lam) * pos + lam * np.clip(v, 0, 1),
        "negative": (1 - lam) * neg + lam * np.clip(-v, 0, 1),
        "classroom": cfg.classroom_pos_weight * pos + cfg.classroom_neg_weight * neg
        + cfg.classroom_arousal_weight * a01,
        "pos_mass": pos,
        "neg_mass": neg,
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
        out.update(teacher_activity=None, student_positive=None, student_negative=None, classroom_activity=None,
                   effectiveness=None, rating=None, teacher_evaluation=None, student_evaluation=None,
                   classroom_evaluation=None)
        return out
    probs = df[[f"{PROB_PREFIX}{n}" for n in label_set.names]].to_numpy(float)
    s = row_scores(probs, df["valence"].to_numpy(), df["arousal"].to_numpy(), label_set, cfg)
    tracks = df["track"].to_numpy()
    roles = df["role"].to_numpy()
    teacher_mask = roles == "teacher"
    teacher_activity = _mean(s["activity"][teacher_mask])
    if teacher_mask.any():
        out["teacher"] = int(tracks[teacher_mask][0])
    per_student = {}
    for tid in sorted(set(tracks[~teacher_mask].tolist())):
        m = tracks == tid
        per_student[int(tid)] = {k: float(np.mean(s[k][m])) for k in ("activity", "positive", "negative",
                                                                        "classroom", "pos_mass", "neg_mass")}
    out["students"] = {str(k): {"positive_activity": v["positive"], "negative_activity": v["negative"],
                                "facial_activity": v["activity"]} for k, v in per_student.items()}
    stu = list(per_student.values())
    student_pos = _mean(np.array([v["positive"] for v in stu]))
    student_neg = _mean(np.array([v["negative"] for v in stu]))
    student_act = _mean(np.array([v["activity"] for v in stu]))
    classroom = _mean(np.array([v["classroom"] for v in stu]))
    balance = _mean(np.array([(v["pos_mass"] - v["neg_mass"] + 1) / 2 for v in stu]))
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
        classroom_activity=classroom,
        effectiveness=effectiveness,
        rating=effectiveness_rating(effectiveness, cfg),
        teacher_evaluation=evaluation(teacher_activity, cfg),
        student_evaluation=evaluation(student_act, cfg),
        classroom_evaluation=evaluation(classroom, cfg),
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
