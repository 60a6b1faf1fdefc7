"""Constants and helpers shared by test modules. Import as `from helpers import ...` (tests/ is on sys.path via the
root conftest); never `from conftest import ...`, which is ambiguous with one conftest.py per folder."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SMOKE = REPO / "configs" / "train_smoke.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
