"""Train/serve parity: the same clip through the training decoders and through `Predictor` (the path of evaluation,
`classemo analyze` and Serve) reaches the model as the same tensor."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import pytest
import torch

from classemo.checkpoint import save_model_checkpoint
from classemo.data.batches import AugmentClips, DecodeClips, DecodeFrames, eval_frames
from classemo.data.dataset import READ_COLUMNS
from classemo.faces import FaceSettings
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.predictor import Predictor
from classemo.preprocessing import Preprocessing

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # not the default: a wrong source shows


def _clip(num_frames: int, seed: int) -> list[bytes]:
    """Smooth, non-square crops of another size than the model's input, PNG-encoded as a dataset stores them."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(num_frames):
        small = rng.integers(0, 256, (9, 10, 3), dtype=np.uint8)
        frames.append(cv2.imencode(".png", cv2.resize(small, (90, 81), interpolation=cv2.INTER_CUBIC))[1].tobytes())
    return frames


def _rows(clips: list[list[bytes]]) -> pa.Table:
    n = len(clips)
    return pa.table({"clip_id": [f"c{i}" for i in range(n)], "frames": clips, "peak_index": [0] * n,
                     "label_idx": [i % 7 for i in range(n)], "valence": [0.1] * n, "arousal": [None] * n,
                     "va_source": ["derived"] * n}).select(READ_COLUMNS)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7, **IMAGENET)
    path = save_model_checkpoint(model, tmp_path_factory.mktemp("ckpt"), labels=LabelSet.paper(),
                                 face=FaceSettings(size=model.image_size))
    return Predictor.from_checkpoint(path, device="cpu", dtype="float32")


def _fed_to_model(predictor: Predictor, clip: list[np.ndarray]) -> torch.Tensor:
    """What `Predictor.predict` hands the spatial stream for one clip: (T, 3, S, S)."""
    seen: list[torch.Tensor] = []
    forward = predictor._forward_spatial
    predictor._forward_spatial = lambda images: seen.append(images.clone()) or forward(images)
    try:
        predictor.predict([clip])
    finally:
        predictor._forward_spatial = forward
    return seen[0]


@pytest.mark.parametrize("cached", [False, True], ids=["streaming", "decoded-once"])
def test_training_decoders_and_predictor_feed_the_model_the_same_tensor(predictor: Predictor, cached: bool) -> None:
    prep = predictor.preprocessing
    # The training side takes its numbers from the model it trains, the serving side from the checkpoint.
    assert Preprocessing.for_model(predictor.model) == Preprocessing(
        image_size=prep.image_size, num_frames=prep.num_frames, mean=prep.mean, std=prep.std)
    assert prep.mean == pytest.approx(IMAGENET["mean"])
    clips = [_clip(5, seed=1), _clip(12, seed=2)]  # shorter and longer than the model's 8 frames
    kwargs = dict(num_frames=prep.num_frames, image_size=prep.image_size, train=False, augment=False,
                  mean=prep.mean, std=prep.std)
    if cached:
        decoded = DecodeFrames(image_size=prep.image_size)(_rows(clips))
        batch = AugmentClips(**kwargs)(decoded)
    else:
        batch = DecodeClips(**kwargs)(_rows(clips))
    for i, encoded in enumerate(clips):
        served = _fed_to_model(predictor, eval_frames(encoded, predictor.num_frames))  # (T, 3, S, S)
        mask = batch["mask"][i]
        trained = torch.from_numpy(batch["frames"][i][mask])
        assert trained.shape == served.shape
        torch.testing.assert_close(trained, served, rtol=0, atol=1e-6)
