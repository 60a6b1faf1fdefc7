"""Paths of a job's driver: absolute before any worker sees them, and never inside Ray's temporary working copy.

`ray job submit --working-dir .` runs the driver in a copy of the project under Ray's session directory, which goes
when the cluster does. Outputs with a relative default (the MLflow store, Ray Train's checkpoints, exports, the
generated sample dataset) would go with it, so under a submitted working directory the driver sets CLASSEMO_HOME
(default `~/.classemo`, on the node that runs the driver) and prints where they go. Inputs the user names
(`data.root=data/mine`) are read from the copy, as they were uploaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from classemo.config import JobConfig
from classemo.tracking import HOME_ENV, absolute_output, home, tracking_uri

SUBMITTED_HOME = "~/.classemo"
# Ray's job supervisor hands each submitted driver its runtime env (working_dir included) in this variable.
RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def in_submitted_working_dir() -> bool:
    """True for a driver started by `ray job submit` with a working directory (its cwd is Ray's copy)."""
    try:
        job_config = json.loads(os.environ.get(RAY_JOB_CONFIG_ENV) or "{}")
    except ValueError:
        return False
    return bool(((job_config or {}).get("runtime_env") or {}).get("working_dir"))


def persistent_home() -> Path | None:
    """CLASSEMO_HOME, set to `~/.classemo` (and said once) when this is a submitted driver and the user chose none."""
    if in_submitted_working_dir() and not home():
        os.environ[HOME_ENV] = str(Path(SUBMITTED_HOME).expanduser())
        print(f"[classemo] started by `ray job submit`: the working directory is Ray's temporary copy of the project, "
              f"so relative outputs and the default MLflow store go to {home()} (set {HOME_ENV}, run.tracking_uri or "
              f"MLFLOW_TRACKING_URI to choose)", flush=True)
    return home()


def absolute_input(path: str) -> str:
    """An input path made absolute against the cwd (a URI or "" as it is)."""
    return path if (not path or "://" in path) else str(Path(path).expanduser().resolve())


def resolve_paths(cfg: JobConfig) -> JobConfig:
    """Absolute paths for everything workers read or write; the MLflow URI fixed on the driver."""
    base = persistent_home()
    d = cfg.data
    generated_here = d.synth_if_missing and not (Path(absolute_input(d.root)) / "manifest.json").exists()
    d.root = absolute_output(d.root) if (base and generated_here) else absolute_input(d.root)
    cfg.run.storage_path = absolute_output(cfg.run.storage_path)
    cfg.run.export_model = absolute_output(cfg.run.export_model)
    cfg.stargan.checkpoint = absolute_input(cfg.stargan.checkpoint)
    if cfg.unified.resume_from and not cfg.unified.resume_from.startswith(("models:/", "runs:/")):
        cfg.unified.resume_from = absolute_input(cfg.unified.resume_from)
    if cfg.unified.init_from and cfg.unified.init_from != "builtin" and \
            not cfg.unified.init_from.startswith(("models:/", "runs:/")):
        cfg.unified.init_from = absolute_input(cfg.unified.init_from)
    cfg.run.tracking_uri = cfg.run.tracking_uri or tracking_uri()
    return cfg
