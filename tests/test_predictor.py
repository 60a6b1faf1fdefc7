"""Predictor: checkpoint round trip, the split (embed + temporal) path and the video feature cache built on it,
batching, torch.compile, input errors, MLflow URIs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch

from classemo.checkpoint import CheckpointError, checkpoint_config, save_checkpoint, save_model_checkpoint
from classemo.data.transforms import FrameError
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.predictor import ClipPrediction, Predictor
from helpers import MEDIA

LABELS = LabelSet(("happy", "sad", "neutral"))
# classemo_tiny, shrunk so that each test runs in well under a second on 2 cores.
SMALL = dict(image_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=1, num_heads=2, num_clusters=4,
             temporal_heads=2, temporal_depth=1)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("classemo_tiny", num_classes=len(LABELS), **SMALL).eval()


def _clips(seed: int = 0) -> list[list[np.ndarray]]:
    """Clips of 1..4 frames with varied sizes, including a greyscale frame."""
    rng = np.random.default_rng(seed)
    clips = []
    for n, side in ((1, 32), (4, 48), (3, 20), (2, 40), (4, 32)):
        clips.append([rng.integers(0, 256, size=(side, side + 3, 3), dtype=np.uint8) for _ in range(n)])
    clips[2][1] = rng.integers(0, 256, size=(20, 23), dtype=np.uint8)
    return clips


def _assert_close(a: list[ClipPrediction], b: list[ClipPrediction], atol: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.label == y.label
        np.testing.assert_allclose(x.probs, y.probs, atol=atol)
        np.testing.assert_allclose([x.valence, x.arousal], [y.valence, y.arousal], atol=atol)
        np.testing.assert_allclose(x.frame_probs, y.frame_probs, atol=atol)
        np.testing.assert_allclose(x.frame_valence, y.frame_valence, atol=atol)
        np.testing.assert_allclose(x.frame_arousal, y.frame_arousal, atol=atol)


def test_checkpoint_round_trip_gives_identical_outputs(model, tmp_path) -> None:
    train_config = {"unified": {"eta1": 0.3}}
    before = Predictor(model, checkpoint_config(model, labels=LABELS, train_config=train_config), device="cpu")
    expected = before.predict(_clips())
    path = save_model_checkpoint(model, tmp_path / "ckpt", labels=LABELS, train_config=train_config)

    config = json.loads((path / "config.json").read_text())
    assert config["model"] == {"name": "classemo_tiny", "kwargs": {**SMALL, "num_classes": 3}}
    assert config["labels"] == LABELS.to_list() and config["train_config"] == train_config
    assert config["preprocessing"] == {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "num_frames": 4}

    loaded = Predictor.from_checkpoint(path, device="cpu")
    assert loaded.labels == ["happy", "sad", "neutral"] and loaded.label_set == LABELS
    assert loaded.info["source"] == str(path) and loaded.info["architecture"] == "classemo_tiny"
    got = loaded.predict(_clips())
    _assert_close(got, expected, atol=0.0)
    # A parent directory works too: the checkpoint is found inside it.
    _assert_close(Predictor.from_checkpoint(tmp_path, device="cpu").predict(_clips()), expected, atol=0.0)


def test_prediction_shapes_and_json(model) -> None:
    pred = Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu")
    out = pred.predict(_clips())
    assert [len(p.frame_probs) for p in out] == [1, 4, 3, 2, 4]
    for p in out:
        assert p.probs.shape == (3,) and p.probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert p.frame_probs.shape[1] == 3 and np.allclose(p.frame_probs.sum(1), 1.0, atol=1e-5)
        assert -1 <= p.valence <= 1 and -1 <= p.arousal <= 1 and p.label == LABELS.names[int(p.probs.argmax())]
        assert p.frame_valence.shape == p.frame_arousal.shape == (len(p.frame_probs),)
    d = json.loads(json.dumps(out[1].to_dict(pred.labels)))
    assert set(d["probs"]) == {"happy", "sad", "neutral"} and len(d["frame_valence"]) == 4
    # A (T, H, W, 3) array is a clip; a (B, T, H, W, 3) array is a batch of clips.
    arr = np.stack(_clips()[4])
    _assert_close(pred.predict([arr]), [out[4]], atol=1e-6)
    _assert_close(pred.predict(arr[None]), [out[4]], atol=1e-6)


def test_predict_equals_embed_then_predict_features(model) -> None:
    pred = Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu", batch_size=2)
    clips = _clips(1)
    direct = pred.predict(clips)
    frames = [f for clip in clips for f in clip]
    feats = pred.embed_frames(frames)
    assert feats.shape == (len(frames), 32) and feats.dtype == np.float32
    bounds = np.cumsum([0] + [len(c) for c in clips])
    split = pred.predict_features([feats[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    _assert_close(split, direct, atol=1e-5)
    assert pred.embed_frames([]).shape == (0, 32)


def test_batch_size_does_not_change_results(model) -> None:
    config = checkpoint_config(model, labels=LABELS)
    # float32 is batch-invariant to 1e-5; bf16 is not (its bound is in tests/test_precision.py).
    one = Predictor(model, config, device="cpu", batch_size=1, dtype="float32").predict(_clips(2))
    many = Predictor(model, config, device="cpu", batch_size=16, dtype="float32").predict(_clips(2))
    _assert_close(one, many, atol=1e-5)


def test_bfloat16_path_stays_close_to_float32(model) -> None:
    config = checkpoint_config(model, labels=LABELS)
    full = Predictor(model, config, device="cpu").predict(_clips())
    half = Predictor(model, config, device="cpu", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model was copied, not cast
    low = half.predict(_clips())
    assert all(p.probs.dtype == np.float32 for p in low)
    assert max(np.abs(a.probs - b.probs).max() for a, b in zip(full, low)) < 0.02
    assert max(np.abs(a.frame_valence - b.frame_valence).max() for a, b in zip(full, low)) < 0.05


def test_bad_input_errors_name_the_problem(model) -> None:
    pred = Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu")
    good = _clips()[0]
    with pytest.raises(FrameError, match="clip 1 has zero frames"):
        pred.predict([good, []])
    with pytest.raises(FrameError, match="clip 0 has 5 frames.*limit of num_frames=4"):
        pred.predict([good * 5])
    with pytest.raises(FrameError, match="clip 1, frame 0.*uint8.*float64"):
        pred.predict([good, [np.zeros((8, 8, 3))]])
    with pytest.raises(FrameError, match="clip 0, frame 0.*shape \\(8, 8, 4\\)"):
        pred.predict([[np.zeros((8, 8, 4), np.uint8)]])
    with pytest.raises(FrameError, match="wrap a single clip"):
        pred.predict(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(FrameError, match="frames, frame 1"):
        pred.embed_frames([good[0], np.zeros((8, 8, 2), np.uint8)])
    with pytest.raises(FrameError, match=r"sequence 0: expected features of shape \(T, 32\)"):
        pred.predict_features([np.zeros((2, 31), np.float32)])
    with pytest.raises(FrameError, match="sequence 1 has 5 frames"):
        pred.predict_features([np.zeros((2, 32), np.float32), np.zeros((5, 32), np.float32)])
    with pytest.raises(FrameError, match="finite floats"):
        pred.predict_features([np.full((2, 32), np.nan, np.float32)])


def test_checkpoint_errors(model, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor.from_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Predictor.from_checkpoint(tmp_path / "empty")
    # A checkpoint without labels/preprocessing (e.g. a bare save_checkpoint) is not a unified-model checkpoint.
    bare = {"model": {"name": "classemo_tiny", "kwargs": {**SMALL, "num_classes": 3}}}
    save_checkpoint(model, bare, tmp_path / "bare")
    with pytest.raises(CheckpointError, match="not a unified-model checkpoint"):
        Predictor.from_checkpoint(tmp_path / "bare")
    with pytest.raises(CheckpointError, match="2 labels"):
        checkpoint_config(model, labels=LabelSet(("happy", "sad")))


def test_from_mlflow_run_and_registered_alias(model, tmp_path, mlflow_uri) -> None:
    from mlflow import MlflowClient

    path = save_model_checkpoint(model, tmp_path / "ckpt", labels=LABELS, train_config={})
    expected = Predictor.from_checkpoint(path, device="cpu").predict(_clips())
    # The client talks to this test's store explicitly: no global MLflow state shared with other tests.
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    run = client.create_run(experiment_id="0")
    # The layout of an mlflow.pyfunc model whose artifacts hold the checkpoint under the key "checkpoint".
    client.log_artifacts(run.info.run_id, str(path), artifact_path="model/artifacts/checkpoint")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("classemo")
    version = client.create_model_version("classemo", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("classemo", "champion", version.version)

    by_run = Predictor.from_checkpoint(f"runs:/{run.info.run_id}/model", device="cpu")
    assert by_run.info["run_id"] == run.info.run_id
    _assert_close(by_run.predict(_clips()), expected, atol=0.0)

    by_alias = Predictor.from_checkpoint("models:/classemo@champion", device="cpu")
    assert by_alias.info == {"source": "models:/classemo@champion", "registered_model": "classemo", "version": 1,
                             "alias": "champion", "run_id": run.info.run_id, "architecture": "classemo_tiny"}
    _assert_close(by_alias.predict(_clips()), expected, atol=0.0)
    assert Predictor.from_checkpoint("models:/classemo/1", device="cpu").info["version"] == 1
    with pytest.raises(CheckpointError, match="cannot load models:/classemo@nope"):
        Predictor.from_checkpoint("models:/classemo@nope", device="cpu")


def test_face_settings_travel_with_the_checkpoint_and_old_ones_mean_haar(model, tmp_path) -> None:
    from classemo.faces import FaceSettings, legacy_settings

    face = FaceSettings(margin=0.25, size=64)
    save_model_checkpoint(model, tmp_path / "new", labels=LABELS, face=face)
    assert Predictor.from_checkpoint(tmp_path / "new", device="cpu").face_settings == face
    save_model_checkpoint(model, tmp_path / "old", labels=LABELS)
    old = Predictor.from_checkpoint(tmp_path / "old", device="cpu")
    assert old.face_settings == legacy_settings(int(model.image_size))
    cfg = json.loads((tmp_path / "new" / "config.json").read_text())
    cfg["preprocessing"]["face"]["detector"] = "mtcnn"
    (tmp_path / "new" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="face settings are invalid: unknown face detector 'mtcnn'"):
        Predictor.from_checkpoint(tmp_path / "new", device="cpu")


def test_predict_image_gives_every_face_largest_first(model, tmp_path) -> None:
    import cv2

    from classemo.faces import FacePath, FaceSettings

    save_model_checkpoint(model, tmp_path / "ckpt", labels=LABELS, face=FaceSettings(size=48))
    predictor = Predictor.from_checkpoint(tmp_path / "ckpt", device="cpu", dtype="float32")
    photo = cv2.imread(str(MEDIA / "multi_face.jpg"))
    found = predictor.predict_image(photo)
    assert len(found) == 5
    areas = [box.area for box, _ in found]
    assert areas == sorted(areas, reverse=True)
    # Each prediction is the model's on that face's crop from the face path, as a 1-frame clip.
    crops = [f.crop[:, :, ::-1] for f in FacePath(FaceSettings(size=48)).faces(photo)]
    want = predictor.predict([[c] for c in crops])
    _assert_close([p for _, p in found], want, atol=1e-5)
    # Each face also carries its pose and readability; the faces of this group photo look at the camera.
    faces = [p.face for _, p in found]
    assert all(f["attention"] in ("front", "down", "away", "unknown") for f in faces)
    assert sum(f["attention"] == "front" for f in faces) >= 4 and all(np.isfinite(f["yaw"]) for f in faces)
    assert predictor.predict_image(np.full((200, 300, 3), 90, np.uint8)) == []


class RecordingPredictor(Predictor):
    """A real Predictor that also keeps what the video pipeline asked of it, to check the feature cache."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crops: list[np.ndarray] = []
        self.features: list[np.ndarray] = []
        self.embed_calls = 0
        self.windows: list[np.ndarray] = []
        self.window_preds: list[ClipPrediction] = []

    def embed_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        feats = super().embed_frames(frames)
        self.embed_calls += 1
        self.crops.extend(np.array(f) for f in frames)
        self.features.extend(feats)
        return feats

    def predict_features(self, seqs: Sequence[np.ndarray]) -> list[ClipPrediction]:
        preds = super().predict_features(seqs)
        self.windows.extend(np.array(s) for s in seqs)
        self.window_preds.extend(preds)
        return preds


def test_video_feature_cache_equals_recomputing_every_window(tmp_path: Path) -> None:
    from classemo.synth.classroom import make_classroom_video
    from classemo.video.pipeline import PROB_PREFIX, analyze_video

    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7)
    predictor = RecordingPredictor(model, checkpoint_config(model, labels=LabelSet.paper()), device="cpu",
                                   dtype="float32")
    video = tmp_path / "class.mp4"
    make_classroom_video(video, scenario="lively", num_students=3, seconds=2.4, fps=5, seed=3, size=(480, 270))
    res = analyze_video(video, predictor, out_dir=tmp_path / "out", fps=5, window=4, stride=1, progress=False,
                        embed_batch=8, teacher="none")

    detections = res.summary["analysis"]["face_detections"]
    assert len(res.tracks) >= 2, res.tracks  # a multi-track video
    # Each detected face is embedded exactly once, crops of several frames and tracks per call ...
    assert len(predictor.crops) == detections
    assert predictor.embed_calls < res.summary["analysis"]["frames_with_faces"]
    # ... while the overlapping windows (stride 1) use each frame's features several times.
    assert sum(len(w) for w in predictor.windows) > 2 * detections

    # Recompute every window from its crops through the full model and compare with the cached path.
    by_feature = {f.tobytes(): c for f, c in zip(predictor.features, predictor.crops)}
    clips = [[by_feature[row.tobytes()] for row in w] for w in predictor.windows]
    fresh = Predictor.predict(predictor, clips)
    for cached, again in zip(predictor.window_preds, fresh, strict=True):
        np.testing.assert_allclose(cached.probs, again.probs, atol=1e-5)
        np.testing.assert_allclose(cached.frame_probs, again.frame_probs, atol=1e-5)
        np.testing.assert_allclose([cached.valence, cached.arousal], [again.valence, again.arousal], atol=1e-5)
        np.testing.assert_allclose(cached.frame_valence, again.frame_valence, atol=1e-5)
        np.testing.assert_allclose(cached.frame_arousal, again.frame_arousal, atol=1e-5)
    # The timeline holds those cached predictions (one row per window of a kept track).
    cached_probs = np.stack([p.probs for p in predictor.window_preds])  # (W, C)
    timeline_probs = res.timeline[[f"{PROB_PREFIX}{n}" for n in predictor.labels]].to_numpy()  # (R, C)
    assert 0 < len(timeline_probs) <= len(cached_probs)
    assert np.abs(timeline_probs[:, None] - cached_probs[None]).max(-1).min(-1).max() < 1e-6


def test_compiled_spatial_stream_matches_eager(model) -> None:
    config = checkpoint_config(model, labels=LABELS)
    eager = Predictor(model, config, device="cpu", dtype="float32").predict(_clips())
    compiled = Predictor(model, config, device="cpu", dtype="float32", compile=True)
    assert compiled.compiled
    for want, got in zip(eager, compiled.predict(_clips()), strict=True):
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-4)
        np.testing.assert_allclose(got.frame_valence, want.frame_valence, atol=1e-4)
