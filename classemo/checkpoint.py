"""The checkpoint contract: a directory with `model.pt` (state dict) and `config.json`.

`config.json` holds at least `{"model": {"name": <registry name>, "kwargs": {...}}}`; the unified model's
checkpoints also hold `labels` (with polarity) and `preprocessing` (image_size, mean, std, num_frames).
Only `Predictor` (and the StarGAN augmenter for generator checkpoints) should call `load_checkpoint`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classemo import __version__
from classemo.models import create_model

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
    config = {**config, "classemo_version": __version__}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return directory


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
