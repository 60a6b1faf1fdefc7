"""The live state: sliding windows over timeline rows, people leaving the grid, "no faces", alerts that hold."""

from __future__ import annotations

import pytest

from classemo.analytics import PROB_PREFIX
from classemo.labels import LabelSet
from classemo.live.state import AlertRule, LiveConfig, LiveState

LABELS = LabelSet.paper()


def _row(track: int, t: float, label: str, valence: float = 0.0, arousal: float = 0.0) -> dict:
    probs = {f"{PROB_PREFIX}{n}": (1.0 if n == label else 0.0) for n in LABELS.names}
    return {"track": track, "time": t, "label": label, "valence": valence, "arousal": arousal, **probs}


def _feed(state: LiveState, tracks: range, t0: float, t1: float, label: str, step: float = 1.0, **va: float) -> None:
    t = t0
    while t <= t1:
        state.add_rows([_row(k, t, label, **va) for k in tracks])
        state.note_faces(t, len(tracks))
        t += step


def test_people_carry_their_current_emotion_and_last_minute_activity() -> None:
    state = LiveState(LABELS)
    _feed(state, range(3), 0, 30, "sad", valence=-0.6)
    _feed(state, range(3), 31, 40, "happy", valence=0.7)
    snap = state.snapshot(40.0)
    assert not snap["no_faces"] and [p["track"] for p in snap["people"]] == [0, 1, 2]
    person = snap["people"][0]
    assert person["label"] == "happy" and person["prob"] == 1.0 and person["valence"] == pytest.approx(0.7)
    # 31 sad rows and 10 happy ones in the last minute: mostly negative, some positive.
    assert person["negative"] > person["positive"] > 0
    spark = person["sparkline"]
    assert len(spark) == 12 and spark[0] is None  # nobody before t=0
    assert spark[-1][0] > spark[-1][1] and spark[5][1] > spark[5][0]  # happy at the end, sad at 10-15 s
    assert snap["classroom"]["classroom_activity"] is not None and snap["classroom"]["rating"] is not None
    # A minute later only the happy rows count.
    _feed(state, range(3), 41, 100, "happy", valence=0.7)
    assert state.snapshot(100.0)["people"][0]["negative"] == pytest.approx(0.0)


def test_a_person_unseen_leaves_the_grid_and_no_face_says_so() -> None:
    state = LiveState(LABELS, LiveConfig(gone_after_s=5.0, no_faces_after_s=3.0))
    _feed(state, range(2), 0, 10, "neutral")
    _feed(state, range(1), 11, 20, "neutral")  # track 1 is gone after t=10
    snap = state.snapshot(20.0)
    assert [p["track"] for p in snap["people"]] == [0]
    state.note_faces(21.0, 0)
    empty = state.snapshot(25.0)  # no face since t=20: no stale people
    assert empty["no_faces"] and empty["people"] == []
    assert LiveState(LABELS).snapshot(0.0)["no_faces"]


def test_roles_name_the_teacher_and_the_teacher_is_not_a_negative_student() -> None:
    rules = (AlertRule("two negative", "students_negative", threshold=0.5, for_s=0.0, count=2),)
    state = LiveState(LABELS, LiveConfig(alerts=rules))
    state.set_roles({0: "teacher"})
    _feed(state, range(2), 0, 10, "anger", valence=-0.8)
    snap = state.snapshot(10.0)
    assert snap["teacher"] == 0 and snap["people"][0]["role"] == "teacher"
    assert snap["classroom"]["teacher_activity"] is not None
    assert snap["alerts"] == []  # one negative student and a negative teacher: under the count of two


def test_alerts_fire_only_after_holding_and_clear_when_the_room_recovers() -> None:
    rules = (AlertRule("negative", "students_negative", threshold=0.5, for_s=60.0, count=5),
             AlertRule("low", "classroom_low", threshold=0.2, for_s=120.0))
    state = LiveState(LABELS, LiveConfig(alerts=rules))
    _feed(state, range(6), 0, 200, "sad", valence=-0.8, arousal=-0.9)
    fired = {}
    for now in range(0, 201, 5):
        for alert in state.snapshot(float(now))["alerts"]:
            fired.setdefault(alert["name"], now)
    # Negative from the first row on: active once it has held 60 s. Sad calm faces keep the classroom's activity
    # at 0.25 * P- + 0.25 * (A + 1) / 2 = 0.26, over the 0.2 of the second rule.
    assert fired["negative"] == 60 and "low" not in fired
    snap = state.snapshot(200.0)
    assert "6 students negative" in snap["alerts"][0]["message"]
    _feed(state, range(6), 201, 300, "happy", valence=0.8, arousal=0.5)
    assert state.snapshot(300.0)["alerts"] == []
    log = {e["name"]: e for e in state.alert_log}
    assert log["negative"]["raised"] == 60 and log["negative"]["ended"] is not None


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(ValueError, match="person_window_s"):
        LiveConfig(person_window_s=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        AlertRule("x", "students_sad", 0.5, 10.0)


def test_a_flat_room_raises_the_low_activity_alert_after_its_duration() -> None:
    rules = (AlertRule("low", "classroom_low", threshold=0.2, for_s=120.0),)
    state = LiveState(LABELS, LiveConfig(alerts=rules))
    _feed(state, range(4), 0, 150, "neutral", arousal=-1.0)  # activity 0: no polarity mass, lowest arousal
    # The page polls the state every second; the condition holds from the first rows on.
    first = next(t for t in range(151) if state.snapshot(float(t))["alerts"])
    assert first == 120
    alerts = state.snapshot(121.0)["alerts"]
    assert [a["name"] for a in alerts] == ["low"] and "0.00 under 0.20" in alerts[0]["message"]


def test_faces_bowed_over_desks_show_their_attention_and_raise_no_negative_alert() -> None:
    # The classroom failure: students writing read as sad. Looking down at a hesitant confidence is neutral, a face
    # turned away is unread, and neither counts towards "students negative".
    rules = (AlertRule("two negative", "students_negative", threshold=0.5, for_s=0.0, count=2),)
    state = LiveState(LABELS, LiveConfig(alerts=rules))
    for t in range(0, 31):
        hesitant = {f"{PROB_PREFIX}{n}": {"sad": 0.6, "neutral": 0.4}.get(n, 0.0) for n in LABELS.names}
        writing = {**_row(0, t, "sad"), **hesitant, "attention": "down", "readable": True, "unread_reason": ""}
        turned = {**_row(1, t, "anger"), "attention": "away", "readable": False, "unread_reason": "turned away"}
        state.add_rows([writing, turned])
        state.note_faces(t, 2)
    snap = state.snapshot(30.0)
    writer, neighbour = snap["people"]
    assert writer["attention_text"] == "looking down" and writer["negative"] == 0.0 and writer["label"] == "sad"
    assert neighbour["label"] == "unread" and neighbour["unread_reason"] == "turned away"
    assert neighbour["negative"] is None and neighbour["attention_text"] == "turned away"
    assert snap["alerts"] == [] and snap["classroom"]["attention"] == {"front": 0.0, "down": 0.5, "away": 0.5}
    assert snap["classroom"]["readable_share"] == pytest.approx(0.5)
