"""Fixtures shared by the Serve test modules."""

from __future__ import annotations

import os
import sys

import pytest

from helpers import REPO


@pytest.fixture(scope="module")
def repo_on_path():
    """`serve.app` lives at the repo root (beside the installed `classemo`): the driver and the Ray workers, which
    inherit the environment of the Ray started next, import it from there, as `serve run` does with --app-dir."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved) if p)
    sys.path.insert(0, str(REPO))
    yield
    sys.path.remove(str(REPO))
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved
