"""The built-in model: it ships in the package, loads by name, reads real photos, and is every entry point's default."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from classemo.cli import app
from helpers import MEDIA, REPO
from classemo.model_source import builtin_dir
from classemo.predictor import Predictor


STILLS = {"0-f15-hao-ph.jpg": "happy", "15-f13-anc-ph.jpg": "anger", "45-m7-di-ph.jpg": "disgust",
          "0-f1-su-ph.jpg": "positive"}  # surprise is "positive" in this label set


@pytest.fixture(scope="module")
def builtin() -> Predictor:
    return Predictor.from_checkpoint("builtin", device="cpu", dtype="float32")


def test_the_package_ships_the_model_with_its_card_and_licences():
    folder = builtin_dir()
    for name in ("config.json", "model.pt", "MODEL_CARD.md", "metrics.json", "LICENSE-faces-muxspace"):
        assert (folder / name).is_file(), name
    size_mb = (folder / "model.pt").stat().st_size / 2**20
    assert size_mb <= 25, f"the built-in model is {size_mb:.1f} MB"  # issue 28's limit on the package
    card = (folder / "MODEL_CARD.md").read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    # The card quotes the figures the rebuild script measured, not other ones: the model beside both floors on the
    # same FER+ test crops, and faces-muxspace beside its HOG floor.
    for key in ("ferplus_test", "hog_floor_ferplus_test", "real_faces_test", "hog_floor_real_faces_test"):
        assert f"{metrics[key]['accuracy']:.3f}" in card and f"{metrics[key]['uar']:.3f}" in card, key
    cnn = metrics["plain_cnn_ferplus_test"]  # empty when the build ran with --no-floors, and the card says so
    assert (f"{cnn['accuracy']:.3f}" in card and f"{cnn['uar']:.3f}" in card) if cnn else "not measured" in card
    assert metrics["ferplus_test"]["num_samples"] > 3000  # the whole FER+ test split, not a slice
    # Its temperature was fitted on FER+ valid (scripts/calibrate_builtin.py): the card quotes the test ECE before and
    # after, the config holds that temperature, and calibrating changed no accuracy.
    cal = metrics["calibration"]
    assert f"{cal['test']['ece_before']:.3f} -> **{cal['test']['ece_after']:.3f}**" in card
    assert cal["test"]["ece_after"] < cal["test"]["ece_before"] and cal["test"]["num_samples"] == 3034
    assert cal["test"]["accuracy"] == metrics["ferplus_test"]["accuracy"]
    config = json.loads((folder / "config.json").read_text())
    assert config["calibration"]["temperature"] == pytest.approx(cal["temperature"], abs=1e-4)
    # FER+ images carry no licence grant: the card says so, and that the weights inherit it.
    assert "no licence grant" in card and "scripts/build_builtin_model.py" in card


def test_loads_by_name_with_its_provenance(builtin):
    assert builtin.info["builtin"] is True and builtin.info["source"] == "builtin"
    assert builtin.labels == ["fear", "anger", "disgust", "happy", "sad", "positive", "neutral"]
    assert builtin.num_frames > 1  # it reads video windows, not only stills
    assert builtin.face_settings.detector == "yunet" and builtin.face_settings.align
    assert builtin.temperature == builtin.config["calibration"]["temperature"] != 1.0  # calibrated probabilities


def test_predict_image_returns_every_face_largest_first(builtin):
    faces = builtin.predict_image(cv2.imread(str(MEDIA / "multi_face.jpg")))
    assert len(faces) == 5
    areas = [box.area for box, _ in faces]
    assert areas == sorted(areas, reverse=True)
    for _, pred in faces:
        assert abs(float(pred.probs.sum()) - 1.0) < 1e-4 and -1.0 <= pred.valence <= 1.0


def test_labels_the_labelled_stills(builtin):
    """A sanity check on four posed stills that are never training input, and agree with metrics.json.

    The FER+ model reads the happy and the surprised still (2 of 4; the anger still reads as sad, the disgust one as
    neutral: FER+ holds 91 disgust faces). Issue #28 aims at 4 of 4; the old faces-muxspace model read 3 of 4 but
    named none of fear, anger, disgust or sad on real held-out faces. Below 2 is a regression.
    """
    got = {name: builtin.predict_image(cv2.imread(str(MEDIA / name)))[0][1].label for name in STILLS}
    correct = [name for name, want in STILLS.items() if got[name] == want]
    assert len(correct) >= 2, f"the built-in model read {got}, expected {STILLS}"
    recorded = json.loads((builtin_dir() / "metrics.json").read_text())["stills"]
    assert {name: s["predicted"] for name, s in recorded.items()} == got  # the card's figures are this model's


def test_analyze_uses_it_by_default(tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["analyze", str(MEDIA / "single_face.mp4"), "--out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["source"] == "builtin"


def test_serve_and_the_batch_job_default_to_it(monkeypatch):
    import yaml

    monkeypatch.syspath_prepend(str(REPO))  # jobs/ and serve/ sit beside the installed package
    from jobs.analyze import parse_args
    from serve.schemas import ServeArgs

    assert ServeArgs().model_uri == "builtin"
    config = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    application = config["applications"][0]
    assert application["args"]["model_uri"] == "builtin"
    assert application["deployments"][0]["user_config"]["model_uri"] == "builtin"
    assert parse_args(["lessons/", "--out", "out/"]).model == "builtin"
