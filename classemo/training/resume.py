"""Start the unified model from a trained one (`unified.resume_from`): load its weights and check they fit the run.

Plain PyTorch and MLflow, no Ray: the job's driver calls it once before any training starts (so a mismatch fails in
seconds) and again to ship the state dict to its workers.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from classemo.data.format import Manifest


class ResumeError(ValueError):
    """A resume source that cannot be loaded or does not fit the dataset or the configured model."""


# Model arguments the resume check leaves out: the job sets these from the dataset, and a pretrained start records
# its weights' mean and std, which a resumed run gets back from the same `pretrained` name.
RUN_SHAPE_KWARGS = frozenset({"num_classes", "num_frames", "image_size", "mean", "std"})


def load_resume_state(source: str, *, manifest: Manifest, model_name: str, data_root: str,
                      model_kwargs: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The float32 state dict of a checkpoint dir or `models:/` URI, checked against the run.

    Weights load at float32 whatever the machine: `Predictor`'s "auto" precision could pick bf16 (on a bf16 GPU, or
    a CPU where bf16 wins the timing) and round them before training continues. A model whose face crops were made
    differently from the dataset's gets a warning, not an error: fine-tuning on other crops is legitimate.

    Args:
        source: Checkpoint directory or `models:/` / `runs:/` URI.
        manifest: The training dataset's manifest (labels and face settings).
        model_name: The registry name the run's config asks for.
        data_root: The dataset root, named in messages.
        model_kwargs: The run's `unified.model_kwargs`; every argument the checkpoint was built with (such as
            `grayscale`) must be set to the same value, or the weights would run in a model they were not
            trained for.

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
    if model_kwargs is not None:
        built = predictor.config["model"].get("kwargs", {})
        differ = {k: v for k, v in built.items() if k not in RUN_SHAPE_KWARGS and model_kwargs.get(k) != v}
        if differ:
            wanted = " ".join(f"unified.model_kwargs.{k}={v}" for k, v in differ.items())
            raise ResumeError(f"--resume-from model {source} was built with {differ}, which this run's "
                              f"unified.model_kwargs does not repeat; add {wanted}")
    warn_if_different(FaceSettings.from_dict(manifest.face, size=manifest.image_size), predictor.face_settings,
                      f"--resume-from {source} on {data_root}")
    state: dict[str, Any] = predictor.model.state_dict()
    return {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
