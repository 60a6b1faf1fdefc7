"""The screenshot of the live page in docs/live.md: a classroom served as MJPEG on 127.0.0.1 at 5 fps, read by
`classemo live`, the page in Debian's Chromium (Playwright) after `--wait` seconds. The classroom is a real video
(`--video`, e.g. tests/fixtures/media/classroom_intel.mp4, played in a loop) or a synthetic lively one.

    python scripts/live_page_screenshot.py [--video tests/fixtures/media/classroom_intel.mp4] [--wait 25]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test's MJPEG server


def main() -> None:
    from mjpeg import MjpegServer
    from playwright.sync_api import sync_playwright

    from classemo.synth.classroom import make_classroom_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "live-page.png")
    ap.add_argument("--wait", type=float, default=25.0, help="seconds of lesson before the screenshot")
    ap.add_argument("--video", type=Path, help="a real classroom video (default: a synthetic lively classroom)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or Path(tmp) / "lesson.mp4"
        if args.video is None:
            make_classroom_video(video, scenario="lively", num_students=8, seconds=30, fps=5, seed=11, size=(960, 540))
        cap, frames = cv2.VideoCapture(str(video)), []
        step = max(1, round((cap.get(cv2.CAP_PROP_FPS) or 5.0) / 5.0))  # served at 5 fps
        while (frame := cap.read()[1]) is not None:
            frames.append(frame)
            for _ in range(step - 1):
                cap.grab()
        server = MjpegServer(fps=5.0, frames=frames)
        proc = subprocess.Popen([sys.executable, "-m", "classemo.cli", "live", server.url, "--out", f"{tmp}/out",
                                 "--seconds", str(args.wait + 10), "--port", "0", "--title",
                                 f"Room 7 ({video.name if args.video else 'synthetic'})"],
                                stderr=subprocess.PIPE, text=True)
        url = next(line.split()[2] for line in proc.stderr if line.startswith("live page: "))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1200, "height": 640})
            page.goto(url)
            time.sleep(args.wait)
            page.screenshot(path=str(args.out))
            browser.close()
        proc.wait()
        server.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
