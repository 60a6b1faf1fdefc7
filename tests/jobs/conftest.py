"""Fixtures of the training-job tests: a tiny synthetic dataset shared by the whole session."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from classemo.data.synth import write_synth_dataset

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "train_smoke.yaml"
# jobs/ holds Ray entry points that run from the working directory, not an installed package.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 classes x 6 clips of 4 frames at 32 px, split by subject (train/val/test all non-empty)."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    manifest = write_synth_dataset(str(root), clips_per_class=6, num_frames=4, image_size=32, seed=0, subjects=12)
    assert all(manifest.counts[s] > 0 for s in ("train", "val", "test")), manifest.counts
    return root
