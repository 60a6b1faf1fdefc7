"""`classemo live` as a teacher runs it: a synthetic classroom served as MJPEG over HTTP on 127.0.0.1, the page and
its event stream read over real HTTP while the lesson goes on, the report at the end; bad sources and addresses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import pytest

from classemo.synth.classroom import make_classroom_video
from mjpeg import MjpegServer


@pytest.fixture(scope="module")
def classroom_stream(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("live") / "lesson.mp4"
    make_classroom_video(path, scenario="lively", num_students=5, seconds=8, fps=5, seed=4, size=(640, 360))
    cap, frames = cv2.VideoCapture(str(path)), []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    server = MjpegServer(fps=5.0, frames=frames)
    yield server
    server.close()


def _live(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "classemo.cli", "live", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_live_lesson_from_an_mjpeg_stream_updates_the_page_and_writes_the_report(classroom_stream,
                                                                                 tmp_path: Path) -> None:
    proc = _live(classroom_stream.url, "--out", str(tmp_path / "lesson"), "--seconds", "8", "--port", "0",
                 "--title", "Room 12")
    url = None
    for line in proc.stderr:
        if line.startswith("live page: "):
            url = line.split()[2]
            break
    assert url and url.startswith("http://127.0.0.1:"), "the command did not print its page"
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and "Room 12" in page.text and "EventSource" in page.text
    states = []
    with httpx.stream("GET", url + "events", timeout=30) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[6:]))
                if states[-1]["ended"] or len(states) >= 40:
                    break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    times = [s["time"] for s in states]
    assert len(states) >= 4 and times == sorted(times) and times[-1] > times[0]
    seen = [s for s in states if s["people"]]
    assert seen, "no state showed a person"
    assert {p["label"] for s in seen for p in s["people"]} <= {"fear", "anger", "disgust", "happy", "sad",
                                                               "positive", "neutral"}
    assert all(s["health"]["fps_analysed"] >= 0 and s["health"]["state_age_s"] is not None for s in seen)
    summary = json.loads((tmp_path / "lesson" / "summary.json").read_text())
    assert summary["live"]["analysed_frames"] > 20 and (tmp_path / "lesson" / "report.html").is_file()
    assert "person(s) tracked" in out


def test_bad_sources_and_open_addresses_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = _live("http://127.0.0.1:9/none.mjpg", "--out", str(tmp_path / "x"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "error: cannot open http://127.0.0.1:9/none.mjpg" in err
    assert "Traceback" not in err
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    for _ in range(3):
        writer.write(cv2.UMat(48, 64, cv2.CV_8UC3).get() * 0)
    writer.release()
    proc = _live(str(video), "--out", str(tmp_path / "y"), "--host", "0.0.0.0", env={"CLASSEMO_API_KEYS": ""})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "set API keys first" in err
