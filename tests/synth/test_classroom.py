"""Synthetic classroom videos: the mp4 decodes, the ground truth lines up with it, Haar finds the visible faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from classemo.cli import app
from classemo.labels import LabelSet
from classemo.synth.classroom import SCENARIOS, expression_trajectory, make_classroom_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("room") / "lively.mp4"
    truth = make_classroom_video(path, scenario="lively", num_students=5, seconds=1.5, fps=8, seed=1)
    return path, truth


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_video_decodes_and_truth_aligns(video: tuple[Path, dict]) -> None:
    path, truth = video
    assert json.loads(path.with_suffix(".json").read_text()) == truth
    assert truth["scenario"] == "lively" and truth["fps"] == 8 and truth["size"] == [960, 540]
    roles = [p["role"] for p in truth["people"]]
    assert roles.count("teacher") == 1 and roles.count("student") == 5
    names = set(LabelSet.paper().names)
    for p in truth["people"]:
        for key in ("boxes", "labels", "valence", "arousal", "visible"):
            assert len(p[key]) == truth["num_frames"], (p["id"], key)
        assert set(p["labels"]) <= names
        assert all(-1 <= v <= 1 for v in p["valence"] + p["arousal"])
        for x, y, w, h in p["boxes"]:
            assert 0 <= x and 0 <= y and x + w <= 960 and y + h <= 540
    teacher = next(p for p in truth["people"] if p["role"] == "teacher")
    student_sides = [p["boxes"][0][2] for p in truth["people"] if p["role"] == "student"]
    assert teacher["boxes"][0][2] > max(student_sides)  # the teacher is nearer the camera

    cap = cv2.VideoCapture(str(path))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (540, 960, 3)
        frames += 1
    cap.release()
    assert frames == truth["num_frames"] == 12


def test_haar_finds_the_visible_faces(video: tuple[Path, dict]) -> None:
    path, truth = video
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    cap = cv2.VideoCapture(str(path))
    found = total = 0
    for t in range(truth["num_frames"]):
        ok, frame = cap.read()
        assert ok
        if t % 2:
            continue
        dets = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(24, 24))
        for p in truth["people"]:
            if p["visible"][t]:
                total += 1
                found += any(_iou(p["boxes"][t], list(map(float, d))) > 0.4 for d in dets)
    cap.release()
    assert total > 0 and found / total >= 0.95, f"Haar found {found}/{total} visible faces"


def test_same_seed_same_truth_and_video(tmp_path: Path) -> None:
    kw = dict(scenario="difficult", num_students=2, seconds=0.5, fps=6, seed=4, size=(480, 270))
    a = make_classroom_video(tmp_path / "a.mp4", **kw)
    b = make_classroom_video(tmp_path / "b.mp4", **kw)
    c = make_classroom_video(tmp_path / "c.mp4", **{**kw, "seed": 5})
    a.pop("video"), b.pop("video"), c.pop("video")
    assert a == b and a != c
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def _role_stats(scenario: str, role: str) -> tuple[float, float, float]:
    """Mean valence, mean arousal and negative-label share over 20 people, a minute each."""
    profile = getattr(SCENARIOS[scenario], role)
    labels = LabelSet.paper()
    rng = np.random.default_rng(0)
    vals, aros, negs = [], [], []
    for _ in range(20):
        truth, _, _, val, aro = expression_trajectory(profile, labels, 600, 10.0, rng)
        vals.append(val.mean())
        aros.append(aro.mean())
        negs.append(np.mean([labels.polarity[t] == "negative" for t in truth]))
    return float(np.mean(vals)), float(np.mean(aros)), float(np.mean(negs))


def test_scenarios_mirror_table_3() -> None:
    lively, difficult, dull = (_role_stats(s, "students") for s in ("lively", "difficult", "dull"))
    assert lively[0] > 0.1 and lively[0] > dull[0] and lively[0] > difficult[0]  # engaged students are pleasant
    assert difficult[2] > 0.2 and difficult[2] > lively[2]  # more negative affect in a difficult lesson
    assert dull[1] < -0.15 and dull[1] < lively[1] and dull[1] < difficult[1]  # bored students: low arousal
    teacher_lively, teacher_dull = _role_stats("lively", "teacher"), _role_stats("dull", "teacher")
    assert teacher_lively[1] > 0.15 > 0 > teacher_dull[1]  # energetic vs tired teacher


def test_students_sometimes_turn_away_or_hide(tmp_path: Path) -> None:
    truth = make_classroom_video(tmp_path / "d.mp4", scenario="difficult", num_students=12, seconds=20, fps=2,
                                 seed=2, size=(480, 270))
    students = [p for p in truth["people"] if p["role"] == "student"]
    hidden = [p for p in students if not all(p["visible"])]
    assert hidden, "no student ever turned away: trackers would never be tested on misses"
    assert np.mean([np.mean(p["visible"]) for p in students]) > 0.8  # short events, not whole videos


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scenario 'chaotic'"):
        make_classroom_video(tmp_path / "x.mp4", scenario="chaotic")
    with pytest.raises(ValueError, match="must end in .mp4"):
        make_classroom_video(tmp_path / "x.avi")
    with pytest.raises(ValueError, match="num_students must be in 1..40"):
        make_classroom_video(tmp_path / "x.mp4", num_students=0)
    result = CliRunner().invoke(app, ["data", "synth-classroom", "--out", str(tmp_path / "y.mp4"), "--scenario", "x"])
    assert result.exit_code != 0 and "unknown scenario 'x'" in result.output


def test_cli_synth_classroom(tmp_path: Path) -> None:
    out = tmp_path / "dull.mp4"
    result = CliRunner().invoke(app, ["data", "synth-classroom", "--out", str(out), "--scenario", "dull",
                                      "--num-students", "2", "--seconds", "0.5", "--fps", "4", "--width", "480",
                                      "--height", "270"])
    assert result.exit_code == 0, result.output
    truth = json.loads(out.with_suffix(".json").read_text())
    assert truth["scenario"] == "dull" and truth["num_frames"] == 2 and len(truth["people"]) == 3
    assert out.stat().st_size > 0
