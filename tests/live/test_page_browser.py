"""`classemo live` as a teacher runs it: a real classroom (classroom_intel.mp4: four adults at desks, no teacher) served
as MJPEG over HTTP on 127.0.0.1, the page in a real browser (Debian's Chromium driven by Playwright) whose tiles, gauge,
attention and stream health appear and change while the lesson goes on, and the report at the end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from helpers import MEDIA
from mjpeg import MjpegServer

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def test_the_page_shows_people_and_follows_the_stream(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("headless Chromium is missing: `make browser` (or apt-get install chromium) installs it")
    cap, frames = cv2.VideoCapture(str(MEDIA / "classroom_intel.mp4")), []
    while (frame := cap.read()[1]) is not None:  # all 33 s at 5 fps (it is 30 fps)
        frames.append(frame)
        for _ in range(5):
            cap.grab()
    server = MjpegServer(fps=5.0, frames=frames)
    proc = subprocess.Popen([sys.executable, "-m", "classemo.cli", "live", server.url, "--out", str(tmp_path / "out"),
                             "--seconds", "36", "--port", "0", "--title", "Room 7", "--show-faces"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        url = next(line.split()[2] for line in proc.stderr if line.startswith("live page: "))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(url)
            assert page.title() == "Room 7"
            page.wait_for_selector(".tile", timeout=30_000)  # a person's first window is cut
            first_health = page.inner_text("#health")
            tiles = page.locator(".tile").count()
            time.sleep(3)
            later_health = page.inner_text("#health")
            gauge = page.eval_on_selector("#gauge div", "e => e.style.width")
            emotions = page.locator(".tile .emo").all_inner_texts()
            attention = page.locator(".tile .att").all_inner_texts()
            header = page.inner_text("header")
            # Past 30 s the auto teacher rule has the lesson's evidence: a student who got up and sat down again
            # (and another who stood up later) is not a teacher.
            page.wait_for_function("() => /t = (3[0-9]|[4-9][0-9])\\./.test(document.getElementById('health')"
                                   ".textContent)", timeout=60_000)
            roles = page.locator(".tile .id").all_inner_texts()
            face_widths = page.eval_on_selector_all(".tile img.face", "es => es.map(e => e.naturalWidth)")
            page.screenshot(path=str(tmp_path / "live.png"))
            browser.close()
    finally:
        out, _ = proc.communicate(timeout=120)
        server.close()
    assert face_widths and set(face_widths) == {64}  # --show-faces: each tile shows the person's newest face
    assert tiles >= 3 and set(emotions) <= {"fear", "anger", "disgust", "happy", "sad", "positive", "neutral", "unread"}
    # Each tile says where the person looks; nobody at these desks is the teacher.
    assert len(attention) == len(emotions) and all(a.split(" · ")[0] in ("facing the front", "looking down", "turned away",
                                                                 "pose unknown") for a in attention)
    assert all(r.startswith("student") for r in roles) and "faces readable" in header
    stream_time = [float(re.search(r"t = ([\d.]+) s", h).group(1)) for h in (first_health, later_health)]
    assert stream_time[1] > stream_time[0]  # updated without a reload
    assert "fps analysed" in later_health and re.fullmatch(r"\d+%", gauge) and gauge != "0%"
    assert (tmp_path / "live.png").stat().st_size > 10_000 and proc.returncode == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["live"]["analysed_frames"] > 40 and summary["live"]["states"] > 5
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "timeline.parquet").is_file()
    assert "person(s) tracked" in out and "frames analysed" in out
    # The lesson's headline says what a person sees in this room: neutral or smiling faces.
    assert re.search(r"^Mostly (neutral|positive); ", out, re.M), out
