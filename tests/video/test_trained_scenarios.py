"""A trained model reads the synthetic classroom scenarios in the paper's order: lively > difficult > dull.

The model is `tests/fixtures/classemo_tiny_synth`, a checkpoint trained by the project's own job on synthetic
faces (the command is in that folder's README.md). The classrooms are drawn here, with seeds the model never saw:
its training clips are single faces from `classemo.data.synth`, these are whole 960x540 classrooms that go
through detection, tracking, cropping and windows first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classemo.data.synth_classroom import make_classroom_video
from classemo.video.pipeline import analyze_video

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "classemo_tiny_synth"
SCENARIOS = ("lively", "difficult", "dull")

pytestmark = pytest.mark.slow  # six 12-second classrooms: about a minute on 2 cores


@pytest.fixture(scope="module")
def trained_predictor():
    from classemo.predictor import Predictor

    return Predictor.from_checkpoint(FIXTURE, device="cpu", dtype="float32")


@pytest.mark.parametrize("seed", [7, 8])
def test_classroom_activity_orders_lively_difficult_dull(trained_predictor, tmp_path: Path, seed: int) -> None:
    overall = {}
    for scenario in SCENARIOS:
        video = tmp_path / f"{scenario}.mp4"
        make_classroom_video(video, scenario=scenario, num_students=6, seconds=12, fps=5, seed=seed)
        res = analyze_video(video, trained_predictor, out_dir=tmp_path / scenario, progress=False, segment_s=60)
        overall[scenario] = json.loads(res.summary_path.read_text())["overall"]
        assert len(overall[scenario]["students"]) == 6, f"{scenario}: every student is tracked"
    activity = {s: overall[s]["classroom_activity"] for s in SCENARIOS}
    assert activity["lively"] > activity["difficult"] > activity["dull"], activity
    # The polarity behind it: lively students read as the most positive, difficult ones as the most negative.
    positive = {s: overall[s]["student_positive"] for s in SCENARIOS}
    negative = {s: overall[s]["student_negative"] for s in SCENARIOS}
    assert positive["lively"] == max(positive.values()), positive
    assert negative["difficult"] == max(negative.values()), negative
