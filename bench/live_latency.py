"""Live-lesson latency: a synthetic classroom served as MJPEG on 127.0.0.1, read by `run_live` (what `classemo live`
runs) for `--minutes`, at `--fps` analysis frames per second.

    python bench/live_latency.py [--students 30] [--fps 5] [--minutes 10] [--model builtin]

It reports, from the states the page would get (one a second):
- state age: wall seconds from the capture of the newest analysed frame to the state (p50, p95, max), per minute, so
  a growing lag shows as a rising row;
- the drop rate: sampled frames the analysis could not take (the capture thread keeps the newest two);
- the process's RSS at minute 1 and at the end (a leak shows as growth).
Results go to docs/benchmarks-live.md by hand, with the machine and the command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' MJPEG server: a camera stand-in on 127.0.0.1


def main() -> None:
    import psutil

    from classemo.live.session import run_live
    from classemo.live.source import LiveSource
    from classemo.predictor import Predictor
    from classemo.synth.classroom import make_classroom_video
    from mjpeg import MjpegServer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--fps", type=float, default=5.0, help="analysis frames per second")
    ap.add_argument("--camera-fps", type=float, default=10.0, help="frames per second the stream sends")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--size", default="1280x720", help="frame size of the classroom")
    args = ap.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    predictor = Predictor.from_checkpoint(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "classroom.mp4"
        make_classroom_video(video, scenario="lively", num_students=args.students, seconds=60, fps=args.camera_fps,
                             seed=0, size=(width, height))
        cap, frames = cv2.VideoCapture(str(video)), []
        while (frame := cap.read()[1]) is not None:
            frames.append(frame)
        server = MjpegServer(fps=args.camera_fps, per_connection=10**9, frames=frames)  # a 60 s lesson, looped
        source = LiveSource(server.url, fps=args.fps, max_seconds=args.minutes * 60)
        proc, start, rows = psutil.Process(), time.monotonic(), []

        def on_state(state: dict) -> None:
            h = state["health"]
            rows.append((time.monotonic() - start, h["state_age_s"], proc.memory_info().rss / 2**20,
                         len(state["people"]), h["dropped"], h["captured"], h["analysed"]))

        result = run_live(source, predictor, out_dir=Path(tmp) / "out", on_state=on_state)
        server.close()

    ages = np.array([r[1] for r in rows if r[1] is not None])
    minutes = int(np.ceil(rows[-1][0] / 60))
    print(f"{args.students}-student synthetic classroom, {width}x{height} at {args.camera_fps:g} fps over MJPEG, "
          f"analysed at {args.fps:g} fps for {rows[-1][0] / 60:.1f} min, model {args.model}; "
          f"{len(result.tracks)} tracks kept")
    print("| minute | states | state age p50 s | p95 s | max s | people in view (median) | RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for m in range(minutes):
        part = [r for r in rows if m * 60 <= r[0] < (m + 1) * 60 and r[1] is not None]
        if part:
            a = np.array([r[1] for r in part])
            print(f"| {m + 1} | {len(part)} | {np.median(a):.2f} | {np.percentile(a, 95):.2f} | {a.max():.2f} | "
                  f"{statistics.median(r[3] for r in part):.0f} | {part[-1][2]:.0f} |")
    last = rows[-1]
    drop = last[4] / max(last[4] + last[6], 1)  # of the sampled frames
    rss1 = next(r[2] for r in rows if r[0] >= 60) if rows[-1][0] >= 60 else rows[0][2]
    print(f"\nstate age p50 {np.median(ages):.2f} s, p95 {np.percentile(ages, 95):.2f} s; "
          f"frames captured {last[5]}, analysed {last[6]}, dropped {last[4]} ({100 * drop:.1f}% of those sampled); "
          f"RSS minute 1 {rss1:.0f} MiB, end {last[2]:.0f} MiB ({100 * (last[2] / rss1 - 1):+.1f}%)")


if __name__ == "__main__":
    main()
