"""`publish_model`: log, register, score candidate and champion with the one evaluator, move the alias."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from classemo.checkpoint import save_model_checkpoint
from classemo.data.dataset import first_clip_frames, inspect_dataset, split_id
from classemo.evaluate import evaluate_dataset
from classemo.labels import LabelSet
from classemo.mlflow_model import CHAMPION, SCORE_TAG, SPLIT_TAG, publish_model
from classemo.models import create_model


def _checkpoint(directory: Path, seed: int) -> str:
    torch.manual_seed(seed)
    model = create_model("classemo_tiny", num_classes=7, image_size=32, num_frames=4, embed_dim=32, depth=1,
                         num_heads=2, num_clusters=4, temporal_depth=1, temporal_heads=2)
    return str(save_model_checkpoint(model, directory, labels=LabelSet.paper()))


def test_candidate_and_champion_are_scored_by_evaluate_dataset(mlflow_uri: str, tiny_dataset: Path,
                                                              tmp_path: Path) -> None:
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("publish")  # not whichever experiment an earlier test in this process left active
    info = inspect_dataset(str(tiny_dataset))
    example = first_clip_frames(info, "val")
    client = MlflowClient(mlflow_uri)
    first = _checkpoint(tmp_path / "first", 0)
    with mlflow.start_run():
        model_info, promo = publish_model(first, dataset_root=str(tiny_dataset), split_id=split_id(info, "val"),
                                          input_example=example, client=client)
    assert promo.promoted and promo.reason == "no champion yet"
    version = client.get_model_version_by_alias("classemo", CHAMPION)
    assert version.version == promo.version and model_info.model_uri.startswith(("runs:/", "models:/"))
    first_score = evaluate_dataset(first, str(tiny_dataset), split="val")["accuracy"]
    assert float(version.tags[SCORE_TAG]) == pytest.approx(first_score, abs=1e-6)  # not a training loop's number

    # Another split identity: the champion's tag cannot be compared, so the same evaluator re-scores it.
    second = _checkpoint(tmp_path / "second", 1)
    with mlflow.start_run():
        _, promo = publish_model(second, dataset_root=str(tiny_dataset), split_id="elsewhere#val:0", name="classemo",
                                 input_example=example, client=client)
    second_score = evaluate_dataset(second, str(tiny_dataset), split="val")["accuracy"]
    new = client.get_model_version("classemo", promo.version)
    assert float(new.tags[SCORE_TAG]) == pytest.approx(second_score, abs=1e-6)
    assert new.tags[SPLIT_TAG] == "elsewhere#val:0"
    assert promo.promoted == (second_score > first_score)
    if not promo.promoted:
        assert promo.champion_score == pytest.approx(first_score, abs=1e-6) and str(promo.champion_version) == "1"
