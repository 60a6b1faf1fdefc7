"""The HTML report: self-contained, rendered by a real headless Chromium, empty-but-valid without faces."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classemo.analytics import PROB_PREFIX, summarize
from classemo.labels import LabelSet
from classemo.report import write_report

LS = LabelSet.paper()


def make_timeline(seconds: float = 150.0) -> pd.DataFrame:
    """A teacher and four students whose moods drift over a lesson."""
    rng = np.random.default_rng(0)
    rows = []
    for tid in range(5):
        for t in np.arange(0, seconds, 0.8):
            logits = rng.normal(0, 0.5, len(LS))
            logits[LS.index("happy" if t < seconds / 2 else "neutral")] += 2.0 + tid * 0.3
            p = np.exp(logits) / np.exp(logits).sum()
            row = {"track": tid, "role": "teacher" if tid == 0 else "student", "time": float(t),
                   "valence": float(np.tanh(rng.normal(0.3, 0.3))), "arousal": float(np.tanh(rng.normal(0, 0.3))),
                   "x": 10.0 * tid, "y": 0.0, "w": 40.0, "h": 40.0}
            row.update({f"{PROB_PREFIX}{n}": float(v) for n, v in zip(LS.names, p)})
            rows.append(row)
    return pd.DataFrame(rows)


def screenshot(html: Path, png: Path, tmp: Path) -> np.ndarray:
    """Render a file in headless Chromium (no network) and return the screenshot's pixels."""
    import cv2

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("headless Chromium is missing: `make browser` (or apt-get install chromium) installs it")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
           f"--screenshot={png}", "--window-size=1200,2000", html.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = cv2.imread(str(png))
    assert img is not None, "Chromium wrote no screenshot"
    return img


def report_for(timeline: pd.DataFrame, out: Path, duration: float) -> Path:
    summary = summarize(timeline, LS, duration_s=duration, segment_s=60)
    summary.update(video={"path": "lesson.mp4", "analysed_frames": 750}, analysis={"fps": 5.0}, tracks={},
                   dropped_tracks={}, privacy="No face images are stored.")
    return write_report(out, timeline, summary, LS)


@pytest.mark.browser
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    tl = make_timeline()
    html_path = report_for(tl, tmp_path / "report.html", 150.0)
    html = html_path.read_text()
    # Self-contained: plots inline, no script, no external fetch.
    assert html.count("data:image/png;base64,") == 2
    assert "<script" not in html and "src=\"http" not in html and "href=" not in html
    assert "Table 3" in html and "Table 4" in html and "Teacher #0" not in html  # names are in the plot, not text
    assert html.count("<tr>") == 2 * (1 + 3 + 1)  # header + three segments + whole video, in both tables
    img = screenshot(html_path, tmp_path / "shot.png", tmp_path)
    assert img.shape[:2] == (2000, 1200)
    assert img.std() > 20, "the rendered report is blank"
    # The plots rendered: many distinct colours (text alone is black-on-white with anti-aliasing greys).
    colours = np.unique((img // 32).reshape(-1, 3), axis=0)
    assert len(colours) > 40
    # Lower half carries content too (the per-person timeline), so the page is not cut short.
    assert img[1000:].std() > 10


@pytest.mark.browser
def test_empty_report_is_valid(tmp_path: Path) -> None:
    tl = make_timeline().iloc[:0]
    html_path = report_for(tl, tmp_path / "report.html", 20.0)
    html = html_path.read_text()
    assert "No faces were found" in html and "data:image" not in html
    img = screenshot(html_path, tmp_path / "shot.png", tmp_path)
    assert img.std() > 5  # text is drawn


def test_single_window_report(tmp_path: Path) -> None:
    # A still image: one window per person at t = 0 still gives plots and tables.
    tl = make_timeline().query("time == 0")
    html = report_for(tl, tmp_path / "r.html", 0.0).read_text()
    assert html.count("data:image/png;base64,") == 2 and "0.0–0.0 min" in html
