"""Where MLflow lives by default, and how classemo's experiments and runs are set up in it.

The default store is MLFLOW_TRACKING_URI if set, else `<home>/mlflow.db`: `home` is CLASSEMO_HOME when set (the Ray
layer sets it under `ray job submit`, whose working directory is a temporary copy that goes with the cluster), else
the project root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

HOME_ENV = "CLASSEMO_HOME"
# MLflow 3's UI reads this experiment tag to tell classic model training from GenAI work.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding pyproject.toml, else `start`."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file():
            return d
    return here


def home() -> Path | None:
    """CLASSEMO_HOME as an absolute path, or None when it is not set."""
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def absolute_output(path: str) -> str:
    """An output path (checkpoints, exports) made absolute: against CLASSEMO_HOME when set, else the cwd.

    URIs (`s3://...`) and empty strings are returned as they are.
    """
    if not path or "://" in path:
        return path
    p = Path(path).expanduser()
    base = home()
    return str((base / p if base and not p.is_absolute() else p).resolve())


def tracking_uri() -> str:
    """MLflow 3 refuses the old file store, so the local default is a sqlite database."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(home() or project_root()) / 'mlflow.db'}"


def use_experiment(name: str) -> Any:
    """`mlflow.set_experiment(name)`, marked as a model-training experiment unless it already says what it is.

    MLflow 3.17's UI opens an unmarked experiment on its GenAI pages (traces); this kind tells it the experiment
    holds training runs. An experiment a user marked otherwise keeps its kind.
    """
    import mlflow

    experiment = mlflow.set_experiment(name)
    if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return experiment


def ui_link(experiment_id: str, run_id: str = "", *, host: str = "http://127.0.0.1:5000") -> str:
    """The address of an experiment (or a run) in `mlflow ui`, on the model-training pages.

    The UI's switch between GenAI and model training is a per-browser setting (default GenAI); the
    `workflowType` query parameter sets it from the link.
    """
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{host}/{page}?workflowType=machine_learning"


def start_job_run(*, experiment: str, run_name: str = "", run_id: str = "", system_metrics: bool = True,
                  interval_s: float = 10.0, tags: dict[str, str] | None = None) -> Any:
    """Start (or, with `run_id`, resume) a job's parent run in a model-training experiment.

    With `system_metrics`, MLflow samples CPU, memory, disk and network (and GPU where NVML finds one) every
    `interval_s` seconds while the run is active: the curves an engineer checks first when a run is slow.

    Returns:
        MLflow's ActiveRun; use it as a context manager.
    """
    import mlflow

    use_experiment(experiment)
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(interval_s)
        mlflow.set_system_metrics_samples_before_logging(1)
    return mlflow.start_run(run_id=run_id or None, run_name=None if run_id else run_name, tags=tags,
                            log_system_metrics=system_metrics)
