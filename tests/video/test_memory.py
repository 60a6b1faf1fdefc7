"""Memory stays flat over the length of a video: peak RSS for 2 minutes within 1.5x that for 20 seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter so ru_maxrss is this analysis's own peak, not the test session's.
CHILD = """
import json, resource, sys
from classemo.predictor import Predictor
from classemo.video.pipeline import analyze_video
p = Predictor.from_checkpoint(sys.argv[1], device="cpu")
res = analyze_video(sys.argv[2], p, out_dir=sys.argv[3], fps=1.0, progress=False)
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "frames": res.summary["video"]["analysed_frames"], "rows": len(res.timeline)}))
"""


def loop_video(src: Path, dst: Path, times: int) -> None:
    """Write `src` `times` times over into `dst` (a long synthetic lesson without drawing every frame again)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = []
    while (ok := cap.read())[0]:
        frames.append(ok[1])
    cap.release()
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(times):
        for f in frames:
            out.write(f)
    out.release()


def test_peak_rss_is_flat(tmp_path: Path, tiny_predictor) -> None:
    from classemo.synth.classroom import make_classroom_video

    short = tmp_path / "short.mp4"
    make_classroom_video(short, scenario="lively", num_students=4, seconds=20, fps=5, seed=3, size=(640, 360))
    long = tmp_path / "long.mp4"
    loop_video(short, long, 6)
    ckpt = tiny_predictor.info["source"]
    peaks = {}
    for name, video in (("short", short), ("long", long)):
        r = subprocess.run([sys.executable, "-c", CHILD, ckpt, str(video), str(tmp_path / name)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        peaks[name] = json.loads(r.stdout.strip().splitlines()[-1])
    assert peaks["long"]["frames"] >= 5.5 * peaks["short"]["frames"]  # the long run really did 6x the work
    assert peaks["long"]["rows"] > 5 * peaks["short"]["rows"]
    ratio = peaks["long"]["maxrss_kb"] / peaks["short"]["maxrss_kb"]
    print(f"peak RSS short {peaks['short']['maxrss_kb'] / 1024:.0f} MiB, long {peaks['long']['maxrss_kb'] / 1024:.0f} "
          f"MiB, ratio {ratio:.3f}")
    assert ratio <= 1.5, peaks
