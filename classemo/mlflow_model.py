"""The MLflow face of a trained model: a pyfunc wrapping the checkpoint dir, registration, and the champion alias.

The logged model's artifacts hold the checkpoint directory under the key `checkpoint`, so `Predictor` can load
`models:/classemo@champion` by downloading it and finding `config.json` + `model.pt` inside. The pyfunc itself
takes a DataFrame with a `frames` column (one list of PNG/JPEG-encoded face crops per clip) and returns the label,
class probabilities and valence/arousal per clip, through the same `Predictor` as everything else.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

REGISTERED_NAME = "classemo"
CHAMPION = "champion"
# Tags on a model version: the validation score and the identity of the split it was measured on.
SCORE_TAG = "val_score"
METRIC_TAG = "val_metric"
SPLIT_TAG = "val_split"


class ClassemoPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc over `Predictor`: DataFrame `frames` (list of encoded images per clip) -> label, probs, V/A."""

    def load_context(self, context: Any) -> None:
        from classemo.predictor import Predictor

        self.predictor = Predictor.from_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from classemo.data.transforms import decode_image

        if "frames" not in model_input:
            raise ValueError("input needs a 'frames' column: one list of PNG/JPEG-encoded face crops per clip")
        clips = [[decode_image(_as_bytes(f)) for f in frames] for frames in model_input["frames"]]
        preds = self.predictor.predict(clips)
        return pd.DataFrame({
            "label": [p.label for p in preds],
            "valence": [float(p.valence) for p in preds],
            "arousal": [float(p.arousal) for p in preds],
            "probs": [np.asarray(p.probs, dtype=np.float64).tolist() for p in preds],
        })


def _as_bytes(frame: bytes | str) -> bytes:
    # MLflow's JSON serving format carries binary columns as base64 text, which its schema enforcement may hand over
    # as str or as the base64 text's bytes; raw PNG/JPEG bytes start with their magic numbers instead.
    data = frame.encode() if isinstance(frame, str) else bytes(frame)
    if data.startswith((b"\x89PNG", b"\xff\xd8")):
        return data
    try:
        # Some encoders (base64.encodebytes, MIME) wrap the text every 76 characters; the line breaks are not data.
        return base64.b64decode(b"".join(data.split()), validate=True)
    except ValueError:
        return data  # not base64 either: decode_image names the problem


SERVING_PACKAGES = ("classemo", "torch", "cloudpickle")  # cloudpickle: it serialises the pyfunc wrapper


def serving_requirements() -> list[str]:
    """The logged model's pip requirements: this classemo (which brings the rest of its dependencies), the torch it
    ran with, and cloudpickle, pinned to the installed versions (the distributions' own, without a local `+cu130`).

    Given rather than inferred: MLflow's inference loads the model in a subprocess (7 s a model on 2 cores, paid by
    every training run and trial) and missed torch, which classemo imports lazily.
    """
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in SERVING_PACKAGES]


def log_model(checkpoint_dir: str | Path, example_frames: Sequence[bytes], *, name: str = "model") -> Any:
    """Log the checkpoint as a pyfunc model in the active run, with a signature and an input example.

    Args:
        checkpoint_dir: A checkpoint directory (config.json + model.pt).
        example_frames: Encoded frames of one real clip; they become the input example, and the signature is
            inferred from the model's actual output on them.
        name: Artifact name inside the run.

    Returns:
        MLflow's ModelInfo (its `model_uri` is what `register` takes).
    """
    from mlflow.models import infer_signature

    example = pd.DataFrame({"frames": [list(example_frames)]})
    from classemo.predictor import Predictor

    wrapper = ClassemoPyfunc()
    wrapper.predictor = Predictor.from_checkpoint(checkpoint_dir)
    signature = infer_signature(example, wrapper.predict(None, example))
    return mlflow.pyfunc.log_model(
        name=name, python_model=ClassemoPyfunc(), artifacts={"checkpoint": str(checkpoint_dir)},
        signature=signature, input_example=example, pip_requirements=serving_requirements(),
    )


@dataclass
class Promotion:
    """What `register_and_promote` did."""

    version: str
    promoted: bool
    reason: str
    champion_version: str  # the champion after the call
    champion_score: float  # its score on this validation split (NaN if there was no champion)


def register_and_promote(
    model_uri: str,
    *,
    score: float,
    split_id: str,
    metric: str = "val_accuracy",
    name: str = REGISTERED_NAME,
    evaluate_champion: Callable[[str], float] | None = None,
    client: MlflowClient | None = None,
) -> Promotion:
    """Register `model_uri` under `name` and move the `champion` alias only if it beats the current champion.

    Scores are compared on the same validation split only: when the champion was scored on a different split,
    `evaluate_champion(uri)` scores it on ours; without that function it is not replaced.

    Args:
        model_uri: `runs:/<id>/model` or the ModelInfo's URI.
        score: The new model's `metric` on the validation split (higher is better).
        split_id: Identity of that split (dataset root + content fingerprint).
        metric: Name of the metric, recorded on the version.
        name: Registered model name.
        evaluate_champion: Scores a `models:/` URI on the validation split.
        client: MLflow client (default: the current tracking URI).
    """
    client = client or MlflowClient()
    version = mlflow.register_model(model_uri, name).version
    for key, value in ((SCORE_TAG, f"{score:.6f}"), (METRIC_TAG, metric), (SPLIT_TAG, split_id)):
        client.set_model_version_tag(name, version, key, value)

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        current = None
    if current is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        return Promotion(version, True, "no champion yet", version, math.nan)

    tags = current.tags or {}
    if tags.get(SPLIT_TAG) == split_id and tags.get(METRIC_TAG) == metric and SCORE_TAG in tags:
        champion_score = float(tags[SCORE_TAG])
    elif evaluate_champion is not None:
        champion_score = float(evaluate_champion(f"models:/{name}/{current.version}"))
    else:
        return Promotion(version, False, f"champion v{current.version} was scored on another split and cannot be "
                                         "re-scored here; alias left in place", current.version, math.nan)
    if score > champion_score:
        client.set_registered_model_alias(name, CHAMPION, version)
        return Promotion(version, True, f"{metric} {score:.4f} > champion v{current.version}'s {champion_score:.4f}",
                         version, score)
    return Promotion(version, False, f"{metric} {score:.4f} <= champion v{current.version}'s {champion_score:.4f}",
                     current.version, champion_score)


def publish_model(
    checkpoint_dir: str | Path,
    *,
    dataset_root: str,
    split_id: str,
    input_example: Sequence[bytes],
    name: str = REGISTERED_NAME,
    client: MlflowClient | None = None,
) -> tuple[Any, Promotion]:
    """Log a trained checkpoint into the active run, register it, and move the champion alias if it scores better.

    The candidate and the champion are scored by one evaluator, `classemo.evaluate.evaluate_dataset` on the
    dataset's validation split: a training loop's own validation number would come from another code path (other
    batching, other precision) and could move the alias on a difference that is not the model's.

    Args:
        checkpoint_dir: The checkpoint directory (config.json + model.pt).
        dataset_root: The dataset whose `val` split scores both models (local or s3://).
        split_id: Identity of that split (`classemo.data.dataset.split_id`), recorded on the version.
        input_example: Encoded frames of one real clip, the logged model's input example.
        name: Registered model name.
        client: MLflow client for the registry (default: the current tracking URI).

    Returns:
        `(model_info, promotion)`: MLflow's ModelInfo of the logged model and what `register_and_promote` did.
    """
    from classemo.evaluate import evaluate_dataset

    def val_accuracy(model: str) -> float:
        return float(evaluate_dataset(model, dataset_root, split="val")["accuracy"])

    model_info = log_model(checkpoint_dir, input_example)
    promotion = register_and_promote(model_info.model_uri, score=val_accuracy(str(checkpoint_dir)), split_id=split_id,
                                     name=name, evaluate_champion=val_accuracy, client=client)
    return model_info, promotion
