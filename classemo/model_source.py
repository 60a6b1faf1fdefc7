"""Where a trained model comes from: a checkpoint directory, or an MLflow URI resolved and downloaded.

This sits below both `Predictor` and `classemo.mlflow_model` (whose pyfunc loads through `Predictor`), so neither
imports the other at module level, and MLflow itself is imported only when a URI names it.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from classemo.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointError, load_checkpoint

MLFLOW_SCHEMES: tuple[str, ...] = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "http://", "https://")
BUILTIN = "builtin"  # the model shipped inside the package (classemo/builtin/MODEL_CARD.md)


def builtin_dir() -> Path:
    """The folder of the built-in model: its checkpoint, model card and licences."""
    return Path(__file__).resolve().parent / "builtin"


def is_mlflow_uri(source: str | Path) -> bool:
    """Whether `source` names an MLflow model / run / remote artifact rather than a local directory."""
    return isinstance(source, str) and source.startswith(MLFLOW_SCHEMES)


def find_checkpoint_dir(root: str | Path) -> Path:
    """The directory holding `config.json` and `model.pt` at or below `root` (an MLflow model keeps it under
    `artifacts/checkpoint`)."""
    root = Path(root)
    if (root / CONFIG_FILE).is_file() and (root / MODEL_FILE).is_file():
        return root
    found = sorted(
        (p.parent for p in root.rglob(CONFIG_FILE) if (p.parent / MODEL_FILE).is_file()),
        key=lambda d: ("checkpoint" not in d.relative_to(root).parts, len(d.parts), str(d)),
    )
    if not found:
        raise CheckpointError(f"no checkpoint ({CONFIG_FILE} + {MODEL_FILE}) found in {root}")
    return found[0]


def load_model_source(source: str | Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Load the checkpoint that `source` names, on the CPU (weights_only: no pickled code runs).

    Args:
        source: `"builtin"` (the model shipped in the package), a checkpoint directory (or a directory above one),
            `models:/<name>@<alias>`,
            `models:/<name>/<version>`, `runs:/<run_id>/<path>` or another artifact URI MLflow can download.
            MLflow URIs use `classemo.tracking.tracking_uri()` for tracking and registry.

    Returns:
        The model, its checkpoint config, and provenance: `source`, and for an MLflow URI `registered_model`,
        `version`, `alias` and `run_id` as far as the URI names them.

    Raises:
        CheckpointError: For a missing directory, no checkpoint inside it, or an MLflow URI that cannot be loaded.
    """
    info: dict[str, Any] = {"source": str(source)}
    if str(source) == BUILTIN:
        path = builtin_dir()
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"the built-in model is missing from this installation ({path}); reinstall "
                                  f"classemo, or give a checkpoint directory or models:/ URI")
        return (*load_checkpoint(path, map_location="cpu"), {**info, "builtin": True})
    if not is_mlflow_uri(source):
        path = Path(source)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint directory {path} does not exist (or give an MLflow models:/ URI)")
        return (*load_checkpoint(find_checkpoint_dir(path), map_location="cpu"), info)

    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from classemo.tracking import tracking_uri

    uri = tracking_uri()
    try:
        found, artifact_uri = _mlflow_info(str(source), uri)
        info.update(found)
        with tempfile.TemporaryDirectory(prefix="classemo-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp,
                                                        tracking_uri=uri, registry_uri=uri)
            # Weights are read into memory here, so the download can go when the block ends.
            model, config = load_checkpoint(find_checkpoint_dir(local), map_location="cpu")
    except MlflowException as e:
        raise CheckpointError(f"cannot load {source} from MLflow at {uri}: {e.message}") from None
    return model, config, info


def _mlflow_info(uri: str, tracking: str) -> tuple[dict[str, Any], str]:
    """Registered name, version, alias and run id behind an MLflow URI, as far as the URI names them, and the
    concrete artifact URI to download. A registered version is resolved here with an explicit client, because
    `download_artifacts` would resolve `models:/` through MLflow's process-global registry URI, which another
    caller in the same process may have pointed elsewhere."""
    from mlflow import MlflowClient

    info: dict[str, Any] = {"registered_model": None, "version": None, "alias": None, "run_id": None}
    if m := re.match(r"^runs:/([^/]+)", uri):
        info["run_id"] = m.group(1)
        return info, uri
    m = re.match(r"^models:/([^/@]+)(?:@([^/]+)|/([^/]+))?", uri)
    if not m:
        return info, uri
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    name, alias, version = m.groups()
    info["registered_model"] = name
    if alias:
        mv = client.get_model_version_by_alias(name, alias)
        info["alias"] = alias
    elif version and version.isdigit():
        mv = client.get_model_version(name, version)
    else:
        return info, uri
    info["version"], info["run_id"] = int(mv.version), mv.run_id
    return info, client.get_model_version_download_uri(name, mv.version)


__all__ = ["BUILTIN", "MLFLOW_SCHEMES", "builtin_dir", "find_checkpoint_dir", "is_mlflow_uri", "load_model_source"]
