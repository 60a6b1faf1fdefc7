"""With a trained model, classroom emotional activity orders the three scenario presets lively > difficult > dull.

The model is tests/fixtures/classroom_tiny: classemo_tiny trained by the project's own job (`jobs/train.py`), the
default run fine-tuned with configs/train_classroom.yaml on clips that `classemo data convert classroom` cut from
synthetic classrooms of seeds 100-107. `tests/fixtures/make_classroom_tiny.sh` rebuilds it. The classrooms here
are drawn from other seeds, so their people are not the ones it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from classemo.synth.classroom import make_classroom_video
from classemo.video.pipeline import analyze_video

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "classroom_tiny"
SCENARIOS = ("lively", "difficult", "dull")

pytestmark = pytest.mark.slow  # draws and analyses three 12-second 960x540 classrooms per seed: ~30 s each


@pytest.fixture(scope="module")
def trained_predictor():
    from classemo.predictor import Predictor

    return Predictor.from_checkpoint(FIXTURE, device="cpu")


@pytest.mark.parametrize("seed", [7, 8])
def test_classroom_activity_orders_the_scenarios(trained_predictor, tmp_path: Path, seed: int) -> None:
    overall = {}
    for scenario in SCENARIOS:
        video = tmp_path / f"{scenario}.mp4"
        make_classroom_video(video, scenario=scenario, num_students=6, seconds=12, fps=5, seed=seed)
        res = analyze_video(video, trained_predictor, out_dir=tmp_path / scenario, progress=False)
        overall[scenario] = res.summary["overall"]
    activity = {s: overall[s]["classroom_activity"] for s in SCENARIOS}
    assert activity["lively"] > activity["difficult"] > activity["dull"], activity
    # The reading behind the order: the lively class is the most positive, and the difficult one is more negative
    # than the lively one. (Difficult vs dull on negative activity is not asserted: the model reads few of the rare
    # negative expressions, and the dull class's low valence mood counts as negative too; docs/analytics.md.)
    positive = {s: overall[s]["student_positive"] for s in SCENARIOS}
    negative = {s: overall[s]["student_negative"] for s in SCENARIOS}
    assert max(positive, key=positive.get) == "lively", positive
    assert negative["difficult"] > negative["lively"], negative

def test_fixture_was_trained_by_the_job() -> None:
    import json

    config = json.loads((FIXTURE / "config.json").read_text())
    assert config["model"]["name"] == "classemo_tiny", config["model"]
    job = config["train_config"]
    assert job["data"]["root"].endswith("dataset") and job["run"]["name"] == "classemo-classroom", job["data"]
