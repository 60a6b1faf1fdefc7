"""`classemo live`'s refusals: bad sources and open addresses exit 2 with one line; the page's API keys. The lesson
itself, from an MJPEG stream to the page in a browser and the report, is tests/live/test_page_browser.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest


def _live(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "classemo.cli", "live", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_bad_sources_and_open_addresses_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = _live("http://127.0.0.1:9/none.mjpg", "--out", str(tmp_path / "x"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "error: cannot open http://127.0.0.1:9/none.mjpg" in err
    assert "Traceback" not in err
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    proc = _live(str(video), "--out", str(tmp_path / "y"), "--host", "0.0.0.0", env={"CLASSEMO_API_KEYS": ""})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "set API keys first" in err


def test_on_another_address_the_page_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live page takes the keys Serve takes: a Bearer header, or `?key=` for a browser opening its link."""
    from classemo.apikeys import load_key_digests
    from classemo.live.page import LivePage

    page = LivePage("127.0.0.1", 0, key_digests=load_key_digests(environ={"CLASSEMO_API_KEYS": "k1,k2"}))
    page.publish({"time": 1.0, "people": []})
    try:
        assert httpx.get(page.url + "state").status_code == 401
        assert httpx.get(page.url + "state", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(page.url + "state", headers={"Authorization": "Bearer k2"}).json()["time"] == 1.0
        assert httpx.get(page.url + "?key=k1").status_code == 200
        assert httpx.get(page.url + "nothing?key=k1").status_code == 404
    finally:
        page.close()
    with pytest.raises(ValueError, match="set API keys first"):
        LivePage("0.0.0.0", 0)
