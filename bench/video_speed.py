"""Video analysis speed: multiple of real time, and the share of time in decode, detection, tracking and the model.

Two inputs, at the default analysis rate (5 fps):
  * a 640x360 30 fps single-face video (../shared/media/single_face.mp4 looped to --single-seconds);
  * a synthetic 960x540 classroom with 10 faces (teacher + 9 students), drawn by make_classroom_video.

    .venv/bin/python bench/video_speed.py [--model CKPT] [--threads 2] [--seconds 20]

Without --model an untrained classemo_tiny checkpoint is used: the cost of a forward pass does not depend on
what the weights learned. Prints a Markdown table (paste it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def loop_video(src: Path, dst: Path, seconds: float) -> None:
    """Repeat a video until it lasts `seconds` (the shared clip is only 2.4 s)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = []
    while (r := cap.read())[0]:
        frames.append(r[1])
    cap.release()
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    n = int(round(seconds * fps))
    for i in range(n):
        # Ping-pong rather than wrap, so the face does not jump at the seam (a jump would start a new track).
        k = i % (2 * len(frames) - 2)
        out.write(frames[k if k < len(frames) else 2 * len(frames) - 2 - k])
    out.release()


def run(video: Path, predictor: object, fps: float, out: Path) -> dict:
    from classemo.video.pipeline import analyze_video

    t0 = time.perf_counter()
    res = analyze_video(video, predictor, out_dir=out, fps=fps, progress=False)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    s = res.summary
    duration = s["duration_s"]
    timings = s["timings_s"]
    return {"video": video.name, "duration_s": duration, "wall_s": wall, "x_realtime": duration / wall,
            "faces": s["analysis"]["face_detections"] / max(s["video"]["analysed_frames"], 1),
            "tracks": len(res.tracks), **{k: timings.get(k, 0.0) / wall for k in ("decode", "detect", "track",
                                                                                    "crop", "model")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint dir or models:/ URI (default: untrained classemo_tiny)")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (the CI machine has 2 cores)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each test video")
    ap.add_argument("--fps", type=float, default=5.0, help="analysis frames per second")
    args = ap.parse_args()

    import cv2
    import torch

    from classemo.data.synth_classroom import make_classroom_video
    from classemo.labels import LabelSet
    from classemo.models import create_model
    from classemo.predictor import Predictor, save_model_checkpoint

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory(prefix="classemo-bench-") as tmp:
        root = Path(tmp)
        if args.model:
            predictor = Predictor.from_checkpoint(args.model, device="cpu")
        else:
            save_model_checkpoint(create_model("classemo_tiny", num_classes=7), root / "ckpt", labels=LabelSet.paper())
            predictor = Predictor.from_checkpoint(root / "ckpt", device="cpu")
        single = root / "single_face_long.mp4"
        loop_video(SHARED_MEDIA / "single_face.mp4", single, args.seconds)
        classroom = root / "classroom10.mp4"
        make_classroom_video(classroom, scenario="lively", num_students=9, seconds=args.seconds, fps=30, seed=0)
        rows = [run(single, predictor, args.fps, root / "o1"), run(classroom, predictor, args.fps, root / "o2")]
    print(f"model: {predictor.info.get('architecture')} ({args.model or 'untrained'}), threads {args.threads}, "
          f"analysis fps {args.fps}")
    print("| video | length s | wall s | × real time | faces/frame | tracks "
          "| decode | detect | track | crop | model |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['video']} | {r['duration_s']:.1f} | {r['wall_s']:.1f} | {r['x_realtime']:.2f} | {r['faces']:.1f} "
              f"| {r['tracks']} | {r['decode']:.0%} | {r['detect']:.0%} | {r['track']:.0%} | {r['crop']:.0%} "
              f"| {r['model']:.0%} |")


if __name__ == "__main__":
    main()
