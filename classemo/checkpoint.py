"""The checkpoint contract: a directory with `model.pt` (state dict) and `config.json`.

`config.json` holds at least `{"model": {"name": <registry name>, "kwargs": {...}}}`; the unified model's
checkpoints (`save_model_checkpoint`) also hold `labels` (with polarity) and `preprocessing` (the
`classemo.preprocessing.Preprocessing` block: image_size, mean, std, num_frames, face settings) and, once the
training job has fitted it, `calibration` (`classemo.calibration.fit_calibration`: the softmax temperature).
Only `Predictor` (and the StarGAN augmenter for generator checkpoints) should call `load_checkpoint`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from classemo import __version__
from classemo.faces import FaceSettings
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.models.classemo_net import SEED_KWARGS
from classemo.preprocessing import Preprocessing

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, incomplete or inconsistent."""


def save_checkpoint(model: nn.Module, config: dict[str, Any], directory: str | Path) -> Path:
    """Write `model.pt` and `config.json` into `directory` (created if needed) and return it."""
    if "model" not in config or "name" not in config["model"]:
        raise CheckpointError("checkpoint config needs {'model': {'name': ..., 'kwargs': {...}}}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)  # unwrap DDP
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save(state, directory / MODEL_FILE)
    _write_config(directory, {**config, "classemo_version": __version__})
    return directory


def _write_config(directory: Path, config: Mapping[str, Any]) -> None:
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))


def read_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a classemo checkpoint: {CONFIG_FILE} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model from its config and load the weights (weights_only: no pickled code runs)."""
    directory = Path(directory)
    config = read_config(directory)
    weights = directory / MODEL_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} is not a classemo checkpoint: {MODEL_FILE} is missing")
    spec = config.get("model", {})
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    state = torch.load(weights, map_location=map_location, weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match model {spec['name']!r}: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )
    return model.eval(), config


def write_calibration(directory: str | Path, calibration: Mapping[str, Any]) -> None:
    """Record a fitted calibration (`classemo.calibration.fit_calibration`) in a checkpoint's `config.json`."""
    directory = Path(directory)
    config = read_config(directory)
    config["calibration"] = dict(calibration)
    calibration_temperature(config)  # never write one that Predictor would refuse
    _write_config(directory, config)


def calibration_temperature(config: Mapping[str, Any]) -> float:
    """The softmax temperature of a checkpoint config's `calibration` block; 1.0 (uncalibrated) without one.

    Raises:
        CheckpointError: A calibration of another method, or a temperature that is not a finite positive number.
    """
    calibration = config.get("calibration")
    if not calibration:
        return 1.0
    if not isinstance(calibration, Mapping) or calibration.get("method") != "temperature":
        raise CheckpointError(f"unknown calibration {calibration!r}: expected method 'temperature'")
    value = calibration.get("temperature")
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        temperature = math.nan
    if not (math.isfinite(temperature) and temperature > 0):
        raise CheckpointError(f"calibration temperature must be a finite number > 0, got {value!r}")
    return temperature


def checkpoint_config(
    model: nn.Module,
    *,
    labels: LabelSet,
    train_config: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    face: FaceSettings | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The unified model's checkpoint config (the contract in DESIGN.md).

    `face` is how the training crops were made (the dataset manifest's `face`); inference crops the same way. A
    config without it (older checkpoints, or training data without face settings) is read as the old Haar path.

    The registry name and kwargs come from the arguments when given, else from what `create_model` recorded on
    the model (`model_name`, `model_kwargs`). `num_classes`, `image_size` and `num_frames` are always taken from
    the model itself, so they cannot disagree with the weights.
    """
    module = getattr(model, "module", model)  # unwrap DDP
    name = model_name or getattr(module, "model_name", None)
    if not name:
        raise CheckpointError("cannot tell the model's registry name: build it with create_model or pass model_name=")
    recorded = model_kwargs if model_kwargs is not None else getattr(module, "model_kwargs", {})
    kwargs = {k: v for k, v in recorded.items() if k not in SEED_KWARGS}  # the state dict replaces starting weights
    kwargs.update(num_classes=int(module.num_classes), image_size=int(module.image_size),
                  num_frames=int(module.num_frames))
    if len(labels) != kwargs["num_classes"]:
        raise CheckpointError(
            f"{len(labels)} labels {list(labels.names)} for a model with {kwargs['num_classes']} classes"
        )
    model: dict[str, Any] = {"name": name, "kwargs": kwargs}
    if getattr(module, "pretrained_cfg", None):  # where training started from; rebuilding never needs it
        model["pretrained"] = dict(module.pretrained_cfg)
    return {
        "model": model,
        "labels": labels.to_list(),
        "preprocessing": Preprocessing.for_model(module, face=face).to_dict(),
        "train_config": dict(train_config or {}),
    }


def save_model_checkpoint(
    model: nn.Module,
    directory: str | Path,
    *,
    labels: LabelSet,
    train_config: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    face: FaceSettings | Mapping[str, Any] | None = None,
) -> Path:
    """Write a unified-model checkpoint that `Predictor.from_checkpoint` loads; returns the directory.

    Args:
        model: The unified model (DDP-wrapped is fine).
        directory: Target directory, created if needed.
        labels: The label set the model was trained on (index i = class i).
        train_config: The resolved training config, saved for provenance.
        model_name: Registry name; defaults to the `model_name` that `create_model` recorded.
        model_kwargs: `create_model` kwargs; defaults to the recorded `model_kwargs`.
        face: How the training crops were made (`FaceSettings` or its dict); None for the old Haar path.
    """
    config = checkpoint_config(model, labels=labels, train_config=train_config, model_name=model_name,
                               model_kwargs=model_kwargs, face=face)
    return save_checkpoint(model, config, directory)
