"""Fixtures for the video tests: a small real checkpoint loaded through Predictor."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_predictor(tmp_path_factory: pytest.TempPathFactory):
    """An untrained classemo_tiny checkpoint, saved and loaded the way a user's would be.

    Detection, tracking, windows, roles and the report do not depend on what the model learned, so an untrained
    model exercises the whole path in seconds; the tests that need trained behaviour train their own.
    """
    import torch

    from classemo.checkpoint import save_model_checkpoint
    from classemo.faces import FaceSettings
    from classemo.labels import LabelSet
    from classemo.models import create_model
    from classemo.predictor import Predictor

    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7)
    ckpt: Path = tmp_path_factory.mktemp("ckpt")
    # New checkpoints carry their data's face settings; the default path is YuNet with aligned crops.
    save_model_checkpoint(model, ckpt, labels=LabelSet.paper(), face=FaceSettings(size=model.image_size))
    return Predictor.from_checkpoint(ckpt, device="cpu")
