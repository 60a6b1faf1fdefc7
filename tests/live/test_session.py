"""run_live: a classroom stream through the stages of `analyze`, a state about every second, the same outputs.

Read whole (no real-time drops), a file gives the frames `analyze` samples, so the live lesson's timeline must be the
recording's: the same people, windows and labels (probabilities to float noise, as live embeds each frame's faces
on their own rather than 64 crops at a time).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from classemo.live.session import run_live
from classemo.live.source import LiveSource
from classemo.synth.classroom import make_classroom_video
from classemo.video.pipeline import analyze_video


@pytest.fixture(scope="module")
def predictor():
    from classemo.predictor import Predictor

    return Predictor.from_checkpoint("builtin", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live") / "lesson.mp4"
    make_classroom_video(path, scenario="lively", num_students=5, seconds=6, fps=5, seed=3, size=(640, 360))
    return path


def test_a_live_lesson_reads_as_its_recording(predictor, classroom: Path, tmp_path: Path) -> None:
    states: list[dict] = []
    result = run_live(LiveSource(str(classroom), fps=5.0, realtime=False), predictor, out_dir=tmp_path / "live",
                      on_state=states.append, state_every_s=0.0)
    recorded = analyze_video(classroom, predictor, out_dir=tmp_path / "rec", fps=5.0, progress=False)

    live_tl, rec_tl = pd.read_parquet(result.timeline_path), recorded.timeline
    assert len(live_tl) == len(rec_tl) > 0
    for col in ("track", "role", "time", "label", "num_frames"):
        assert live_tl[col].tolist() == rec_tl[col].tolist(), col
    probs = [c for c in rec_tl.columns if c.startswith("p_")]
    np.testing.assert_allclose(live_tl[probs].to_numpy(), rec_tl[probs].to_numpy(), atol=1e-4)
    assert (tmp_path / "live" / "report.html").is_file()

    summary = json.loads(result.summary_path.read_text())
    assert summary["live"]["dropped_frames"] == 0 and summary["live"]["gaps"] == []
    assert summary["live"]["analysed_frames"] == summary["video"]["analysed_frames"] == 30
    # States came while the stream ran: people appear once their first window is cut, with the stream's health.
    assert len(states) >= 10 and states[-1]["ended"]
    assert not states[-1]["no_faces"] and len(states[-1]["people"]) >= 4
    health = states[-1]["health"]
    assert health["analysed"] == 30 and health["dropped"] == 0 and health["state_age_s"] >= 0
    person = states[-1]["people"][0]
    assert person["label"] in predictor.labels and 0 <= person["negative"] <= 1 and person["sparkline"]
    assert all("face" not in p for s in states for p in s["people"])  # no face leaves the analysis by default


def test_a_lesson_resumed_from_its_checkpoint_goes_on_and_reports_both_parts(predictor, classroom: Path,
                                                                              tmp_path: Path) -> None:
    """What a Serve stream actor does when Ray restarts it: the second part starts from the first's last
    checkpoint, later in lesson time, with new track ids, and the report covers both parts and the lost seconds."""
    checkpoints: list = []
    first = run_live(LiveSource(str(classroom), fps=5.0, realtime=False, max_seconds=3.0), predictor,
                     out_dir=tmp_path / "one", on_checkpoint=checkpoints.append, checkpoint_every_s=0.0)
    cp = checkpoints[-1]
    part_one = pd.read_parquet(first.timeline_path)
    assert cp.rows and len(cp.parts) == 1 and cp.next_track > 0 and cp.offset_s >= 2.8

    resumed = cp.resumed(cp.written_at + 2.0)  # the process was down for 2 s of lesson time
    states: list[dict] = []
    result = run_live(LiveSource(str(classroom), fps=5.0, realtime=False), predictor, out_dir=tmp_path / "two",
                      on_state=states.append, state_every_s=0.0, resume=resumed, show_faces=True)
    timeline = pd.read_parquet(result.timeline_path)
    summary = json.loads(result.summary_path.read_text())
    later = timeline[timeline["time"] > resumed.offset_s]
    assert len(timeline) > len(part_one) and len(later) > 0
    assert set(later["track"]) and min(later["track"]) >= cp.next_track  # the second part's people, new ids
    assert set(part_one["track"]) <= set(timeline["track"])  # the first part's people are still in the report
    assert summary["live"]["restarts"] == 1
    gap = [g for g in summary["live"]["gaps"] if g["reason"] == "analysis restarted"]
    assert len(gap) == 1 and gap[0]["end_s"] - gap[0]["start_s"] == pytest.approx(2.0)
    first_frames = json.loads(first.summary_path.read_text())["live"]["analysed_frames"]
    assert summary["live"]["analysed_frames"] == first_frames + 30 and 14 <= first_frames <= 16
    # The page went on from the first part's state: its first snapshot already knows the people seen before.
    assert states[0]["time"] >= resumed.offset_s and states[0]["health"]["restarts"] == 1
    # --show-faces: each person on the page carries their newest crop, a small JPEG, once this part has seen them.
    faces = [p["face"] for p in states[-1]["people"] if p["track"] >= cp.next_track]
    assert faces and all(f.startswith("data:image/jpeg;base64,") for f in faces)
    thumb = cv2.imdecode(np.frombuffer(base64.b64decode(faces[0].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (64, 64, 3)
