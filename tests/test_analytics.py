"""Classroom analytics: bounds, orderings on hand-made probability sequences, segments and thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from classemo.analytics import (PROB_PREFIX, AnalyticsConfig, effectiveness_rating, evaluation, readings, row_scores,
                                segment_bounds, summarize)
from classemo.labels import LabelSet

LS = LabelSet.paper()  # fear anger disgust happy sad positive neutral


def onehot(name: str, strength: float = 0.9) -> np.ndarray:
    p = np.full(len(LS), (1 - strength) / (len(LS) - 1))
    p[LS.index(name)] = strength
    return p


def timeline(people: dict[int, tuple[str, str, float, float]], seconds: float = 120.0, step: float = 1.0,
             rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Rows for each person: (role, label, valence, arousal), held over time with a little noise."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for tid, (role, label, v, a) in people.items():
        for t in np.arange(0, seconds, step):
            p = onehot(label, 0.8) + rng.uniform(0, 0.05, len(LS))
            p /= p.sum()
            row = {"track": tid, "role": role, "time": float(t),
                   "valence": float(np.clip(v + rng.normal(0, 0.05), -1, 1)),
                   "arousal": float(np.clip(a + rng.normal(0, 0.05), -1, 1))}
            row.update({f"{PROB_PREFIX}{n}": float(x) for n, x in zip(LS.names, p)})
            rows.append(row)
    return pd.DataFrame(rows)


def lesson(student_label: str, v: float, a: float, teacher_label: str = "happy") -> pd.DataFrame:
    people = {0: ("teacher", teacher_label, 0.6, 0.5)}
    people.update({i: ("student", student_label, v, a) for i in range(1, 6)})
    return timeline(people)


def test_readings_follow_the_label_set_and_the_confidence() -> None:
    cfg = AnalyticsConfig(min_confidence=0.5)
    probs = np.stack([onehot("happy", 0.9), onehot("sad", 0.9), onehot("neutral", 0.9), onehot("sad", 0.4)])
    assert readings(probs, LS, cfg).tolist() == ["positive", "negative", "neutral", "neutral"]
    custom = LabelSet(("engaged", "bored"))
    assert readings(np.array([[0.3, 0.7]]), custom, cfg).tolist() == ["negative"]


def test_a_hesitant_spread_reads_neutral_not_negative() -> None:
    # The classroom failure: mass spread over the four negative classes summed to "negative 0.35" on neutral faces.
    spread = np.array([[0.08, 0.06, 0.03, 0.09, 0.26, 0.05, 0.43]])  # fear anger disgust happy sad positive neutral
    s = row_scores(spread, np.array([-0.1]), np.array([0.0]), LS, AnalyticsConfig())
    assert s["negative"][0] == 0 and s["neutral"][0] == 1


def test_unreadable_rows_stay_out_of_the_emotion_measures() -> None:
    tl = timeline({1: ("student", "happy", 0.7, 0.6), 2: ("student", "sad", -0.6, 0.0)})
    tl["readable"] = tl["track"] == 1  # student 2 bowed over the desk all lesson: read as sad, but unreadable
    tl["attention"] = np.where(tl["track"] == 1, "front", "down")
    o = summarize(tl, LS, duration_s=120)["overall"]
    assert o["student_negative"] == 0 and o["student_positive"] == 1
    assert o["students"]["2"]["positive_activity"] is None and o["students"]["2"]["readable_share"] == 0
    assert o["readable_share"] == pytest.approx(0.5)
    assert o["attention"] == {"front": 0.5, "down": 0.5, "away": 0.0}


def test_scores_are_bounded_for_any_input() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(len(LS), 0.3), size=2000)
    # Extreme V/A, including values a hair outside [-1, 1] as a tanh head can give after float error.
    va = rng.uniform(-1.001, 1.001, size=(2000, 2))
    va[:4] = [[-1, -1], [1, 1], [-1, 1], [1, -1]]
    for cfg in (AnalyticsConfig(), AnalyticsConfig(activity_expr_weight=1.0, min_confidence=0.0, classroom_pos_weight=1.0,
                                                   classroom_neg_weight=0.0, classroom_arousal_weight=0.0)):
        s = row_scores(probs, va[:, 0], va[:, 1], LS, cfg)
        for k, v in s.items():
            assert v.min() >= 0 and v.max() <= 1, k
    tl = timeline({0: ("teacher", "anger", -1, 1), 1: ("student", "fear", -1, 1), 2: ("student", "happy", 1, 1)})
    out = summarize(tl, LS, duration_s=120, segment_s=30)
    for seg in [out["overall"], *out["segments"]]:
        for k in ("teacher_activity", "student_positive", "student_negative", "classroom_activity", "effectiveness"):
            assert 0 <= seg[k] <= 1, k


def test_classroom_activity_orders_lively_difficult_dull() -> None:
    lively = summarize(lesson("happy", 0.7, 0.6), LS, duration_s=120)["overall"]
    difficult = summarize(lesson("sad", -0.5, 0.1), LS, duration_s=120)["overall"]
    confused = summarize(lesson("fear", -0.5, 0.5), LS, duration_s=120)["overall"]
    dull = summarize(lesson("neutral", 0.0, -0.4), LS, duration_s=120)["overall"]
    assert lively["classroom_activity"] > difficult["classroom_activity"] > dull["classroom_activity"]
    assert lively["classroom_activity"] > confused["classroom_activity"] > dull["classroom_activity"]
    assert lively["student_positive"] > dull["student_positive"] >= difficult["student_positive"]
    assert difficult["student_negative"] > dull["student_negative"] >= lively["student_negative"]
    assert dull["student_neutral"] > lively["student_neutral"]
    assert lively["effectiveness"] > difficult["effectiveness"]
    assert lively["effectiveness"] > dull["effectiveness"]
    assert lively["rating"] in ("Excellent", "Good") and dull["rating"] in ("Average", "Poor")
    assert lively["classroom_evaluation"] == "Active" and dull["classroom_evaluation"] == "Average"


def test_teacher_activity_orders_expressive_over_flat() -> None:
    expressive = summarize(lesson("neutral", 0, 0, teacher_label="happy"), LS, duration_s=120)["overall"]
    flat = timeline({0: ("teacher", "neutral", 0.0, -0.5), 1: ("student", "neutral", 0, 0)})
    flat = summarize(flat, LS, duration_s=120)["overall"]
    assert expressive["teacher_activity"] > flat["teacher_activity"]
    assert expressive["teacher_evaluation"] == "Active" and flat["teacher_evaluation"] == "Average"


def test_students_are_averaged_per_person() -> None:
    # Student 1 seen 10x as often as student 2 must not dominate the classroom mean.
    a = timeline({1: ("student", "happy", 0.7, 0.6)}, step=0.1)
    b = timeline({2: ("student", "neutral", 0.0, -0.4)}, step=1.0)
    both = summarize(pd.concat([a, b]), LS, duration_s=120)["overall"]
    only_a = summarize(a, LS, duration_s=120)["overall"]["classroom_activity"]
    only_b = summarize(b, LS, duration_s=120)["overall"]["classroom_activity"]
    assert both["classroom_activity"] == pytest.approx((only_a + only_b) / 2, abs=1e-9)
    assert set(both["students"]) == {"1", "2"} and both["teacher"] is None


def test_segments_split_time_and_empty_segments_are_none() -> None:
    tl = lesson("happy", 0.7, 0.6)
    tl = tl[(tl["time"] < 30) | (tl["time"] >= 90)]  # nobody in view for the middle minute
    out = summarize(tl, LS, duration_s=120, segment_s=30)
    assert [(s["start_s"], s["end_s"]) for s in out["segments"]] == [(0, 30), (30, 60), (60, 90), (90, 120)]
    assert out["segments"][1]["num_rows"] == 0 and out["segments"][1]["classroom_activity"] is None
    assert out["segments"][1]["rating"] is None
    assert out["segments"][0]["rating"] is not None
    assert sum(s["num_rows"] for s in out["segments"]) == len(tl)


def test_zero_length_segments_and_videos() -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        segment_bounds(10, 0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        summarize(lesson("happy", 0, 0), LS, duration_s=120, segment_s=-5)
    with pytest.raises(ValueError, match="positive number of seconds"):
        segment_bounds(10, float("nan"))
    # A still image: zero duration, one zero-length segment holding its rows.
    img = lesson("happy", 0.7, 0.6).query("time == 0")
    out = summarize(img, LS, duration_s=0.0, segment_s=60)
    assert len(out["segments"]) == 1 and out["segments"][0]["start_s"] == out["segments"][0]["end_s"] == 0
    assert out["segments"][0]["num_rows"] == len(img)
    # A trailing partial segment, and an empty timeline.
    assert segment_bounds(125, 60)[-1] == (120, 125)
    empty = summarize(img.iloc[:0], LS, duration_s=10, segment_s=60)
    assert empty["overall"]["classroom_activity"] is None and empty["overall"]["rating"] is None


def test_thresholds_come_from_config() -> None:
    cfg = AnalyticsConfig()
    assert [effectiveness_rating(x, cfg) for x in (0.9, 0.5, 0.35, 0.1, None)] == \
        ["Excellent", "Good", "Average", "Poor", None]
    assert [evaluation(x, cfg) for x in (0.6, 0.4, 0.1)] == ["Active", "Normal", "Average"]
    strict = AnalyticsConfig(excellent=0.95, good=0.9, average=0.85, active=0.95, normal=0.9)
    tl = lesson("happy", 0.7, 0.6)
    assert summarize(tl, LS, duration_s=120)["overall"]["rating"] != "Poor"
    assert summarize(tl, LS, duration_s=120, cfg=strict)["overall"]["rating"] == "Poor"
    with pytest.raises(ValueError, match="sum to 1"):
        AnalyticsConfig(classroom_pos_weight=0.9)
    with pytest.raises(ValueError, match="excellent >= good"):
        AnalyticsConfig(excellent=0.2)
