"""Start the unified model from a trained one (`unified.resume_from`): load its weights and check they fit the run.

Plain PyTorch and MLflow, no Ray: the job's driver calls it once before any training starts (so a mismatch fails in
seconds) and again to ship the state dict to its workers.
"""

from __future__ import annotations

from typing import Any

import torch

from classemo.data.format import Manifest


class ResumeError(ValueError):
    """A resume source that cannot be loaded or does not fit the dataset or the configured model."""


def load_resume_state(source: str, *, manifest: Manifest, model_name: str, data_root: str) -> dict[str, torch.Tensor]:
    """The float32 state dict of a checkpoint dir or `models:/` URI, checked against the run.

    Weights load at float32 whatever the machine: `Predictor`'s "auto" precision could pick bf16 (on a bf16 GPU, or
    a CPU where bf16 wins the timing) and round them before training continues. A model whose face crops were made
    differently from the dataset's gets a warning, not an error: fine-tuning on other crops is legitimate.

    Args:
        source: Checkpoint directory or `models:/` / `runs:/` URI.
        manifest: The training dataset's manifest (labels and face settings).
        model_name: The registry name the run's config asks for.
        data_root: The dataset root, named in messages.

    Raises:
        ResumeError: When the source cannot be loaded, was trained on other labels, or is another model.
    """
    from classemo.checkpoint import CheckpointError
    from classemo.faces import FaceSettings, warn_if_different
    from classemo.predictor import Predictor

    labels = manifest.label_set
    try:
        predictor = Predictor.from_checkpoint(source, device="cpu", dtype="float32")
    except (CheckpointError, OSError, ValueError) as e:
        raise ResumeError(f"cannot resume from {source}: {e}") from None
    if list(predictor.labels) != list(labels.names):
        raise ResumeError(f"--resume-from model {source} was trained on labels {predictor.labels}, "
                          f"but the dataset {data_root} has {list(labels.names)}")
    name = predictor.config["model"]["name"]
    if name != model_name:
        raise ResumeError(f"--resume-from model is a {name!r}, the config asks for {model_name!r}")
    warn_if_different(FaceSettings.from_dict(manifest.face, size=manifest.image_size), predictor.face_settings,
                      f"--resume-from {source} on {data_root}")
    state: dict[str, Any] = predictor.model.state_dict()
    return {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
