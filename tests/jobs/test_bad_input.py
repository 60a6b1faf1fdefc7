"""Bad input to `jobs/train.py` fails fast, before any training, with one clear message (exit code 2)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from classemo.data.format import write_dataset
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.checkpoint import save_model_checkpoint
from jobs.train import main
from helpers import SMOKE, free_port


def _run(capsys: pytest.CaptureFixture, *overrides: str) -> str:
    code = main(["--config", str(SMOKE), "stargan.enabled=false", *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("classemo train: error: ") and "Traceback" not in err
    return err


def test_missing_dataset_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _run(capsys, f"data.root={tmp_path / 'nope'}", "data.synth_if_missing=false")
    assert "no dataset at" in err and "does not exist" in err


def test_empty_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "empty"
    write_dataset([], str(root), LabelSet.paper(), image_size=32, source="test", converter_version="test/1")
    err = _run(capsys, f"data.root={root}", "data.synth_if_missing=false")
    assert "has no clips in split(s) ['train', 'val']" in err


def test_resume_from_a_model_with_other_labels(tiny_dataset: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    labels = LabelSet(("happy", "sad", "neutral"))
    model = create_model("classemo_tiny", num_classes=3, image_size=32, num_frames=4, embed_dim=32, depth=1,
                         num_heads=2, num_clusters=4, temporal_depth=1, temporal_heads=2)
    ckpt = save_model_checkpoint(model, tmp_path / "other", labels=labels)
    err = _run(capsys, f"data.root={tiny_dataset}", f"unified.resume_from={ckpt}")
    assert "was trained on labels ['happy', 'sad', 'neutral']" in err and "fear" in err


def test_unreachable_s3_endpoint(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    t0 = time.perf_counter()
    err = _run(capsys, "data.root=s3://bucket/ds")
    assert "cannot reach the dataset at s3://bucket/ds" in err
    assert time.perf_counter() - t0 < 30


def test_bad_override(capsys: pytest.CaptureFixture) -> None:
    assert "unknown config key" in _run(capsys, "unified.epoch=3")
