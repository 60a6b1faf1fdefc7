"""Fixtures of the tuning tests: a tiny synthetic dataset and the repo on sys.path (tune/ and jobs/ are scripts)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from classemo.data.synth import write_synth_dataset

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Small enough for a 3-trial search in about a minute on 2 cores; every trial sees the same data.
TINY_SEARCH = [
    "job.data.num_frames=4", "job.data.image_size=32", "job.data.batch_size=8", "job.data.augment=false",
    "job.unified.warmup_epochs=0", "job.scaling.num_workers=1", "job.scaling.cpus_per_worker=1.0",
    "search.trial_cpus=0.1",
]


@pytest.fixture(scope="session")
def tune_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 classes x 6 clips of 4 frames at 32 px, split by subject."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    manifest = write_synth_dataset(str(root), clips_per_class=6, num_frames=4, image_size=32, seed=0, subjects=12)
    assert all(manifest.counts[s] > 0 for s in ("train", "val", "test")), manifest.counts
    return root
