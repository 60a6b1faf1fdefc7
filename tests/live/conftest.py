"""Live-source fixtures: a small video file and a real MJPEG-over-HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from mjpeg import MjpegServer, frame_of


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 frames at 10 fps (3.6 s), 160x120, each carrying its index."""
    path = tmp_path_factory.mktemp("live") / "small.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for i in range(36):  # indices stay under 256 / 7 so the brightness code is unambiguous
        writer.write(frame_of(i))
    writer.release()
    return path


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer()
    yield server
    server.close()
