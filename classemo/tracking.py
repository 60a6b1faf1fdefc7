"""Where MLflow lives by default: MLFLOW_TRACKING_URI if set, else sqlite in the project root."""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding pyproject.toml, else `start`."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file():
            return d
    return here


def tracking_uri() -> str:
    """MLflow 3 refuses the old file store, so the local default is a sqlite database."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"
