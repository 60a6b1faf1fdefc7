"""Video analysis speed and detection recall, YuNet and Haar side by side in one run.

Speed: `classemo analyze`'s path at 5 analysis fps, as a multiple of real time (median of --repeats runs), with the
share of time in decode, detection, tracking, head pose, crop and the model, on three 960x540 or 640x360 inputs:
  * a 640x360 30 fps single-face video (tests/fixtures/media/single_face.mp4 looped to --seconds);
  * synthetic 960x540 classrooms with 10 faces (teacher + 9 students) and 30 faces (teacher + 29 students).

Recall: on the synthetic classrooms' ground truth (30 faces, lively, difficult and dull), the share of drawn, visible
faces that a detection overlaps with IoU >= 0.3 in each analysed frame.

    .venv/bin/python bench/video_speed.py [--model CKPT] [--detectors yunet,haar] [--repeats 3] [--seconds 20]

Without --model an untrained classemo_tiny checkpoint is used: the cost of a forward pass does not depend on what
the weights learned. Prints Markdown tables (paste them into docs/benchmarks-video.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

MEDIA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "media"  # committed with the repo
SCENARIOS = ("lively", "difficult", "dull")
STAGES = ("decode", "detect", "track", "pose", "crop", "model")


def loop_video(src: Path, dst: Path, seconds: float) -> None:
    """Repeat a video until it lasts `seconds` (the committed clip is only 2.4 s)."""
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


def face_settings(detector: str, model: object) -> object:
    """The model's own face settings (its margin, crop size) with `detector`, as `classemo analyze --detector` does."""
    from dataclasses import replace

    return replace(model, detector=detector, align=model.align and detector == "yunet")  # type: ignore[type-var]


def speed(video: Path, predictor: object, detector: str, fps: float, out: Path, repeats: int) -> dict:
    """Median over `repeats` runs of analyze's real-time factor, with the stage shares of the median run."""
    from classemo.video.pipeline import analyze_video

    runs = []
    for k in range(repeats):
        t0 = time.perf_counter()
        res = analyze_video(video, predictor, out_dir=out / f"{detector}{k}", fps=fps, progress=False,  # type: ignore
                            faces=face_settings(detector, predictor.face_settings))  # type: ignore[attr-defined]
        wall = time.perf_counter() - t0
        s = res.summary
        runs.append({"wall_s": wall, "x_realtime": s["duration_s"] / wall, "duration_s": s["duration_s"],
                     "faces": s["analysis"]["face_detections"] / max(s["video"]["analysed_frames"], 1),
                     "tracks": len(res.tracks), **{k: s["timings_s"].get(k, 0.0) / wall for k in STAGES},
                     "pose_ms_per_face": 1000 * s["timings_s"].get("pose", 0.0)
                     / max(s["analysis"]["face_detections"], 1)})
    median = statistics.median(r["x_realtime"] for r in runs)
    row = min(runs, key=lambda r: abs(r["x_realtime"] - median))
    return {**row, "video": video.name, "detector": detector, "x_realtime": median,
            "all_x": [r["x_realtime"] for r in runs]}


def recall(video: Path, truth: dict, detector: str, fps: float, model_face: object) -> tuple[float, float]:
    """(recall of drawn visible faces at IoU >= 0.3, mean detection ms per analysed frame)."""
    import numpy as np

    from classemo.faces import FacePath
    from classemo.video.decode import iter_frames
    from classemo.video.track import iou_matrix

    path = FacePath(face_settings(detector, model_face))  # type: ignore[arg-type]
    hits = drawn = 0
    seconds = 0.0
    for idx, _, frame in iter_frames(video, fps=fps):
        t0 = time.perf_counter()
        boxes = np.array([[b.x, b.y, b.w, b.h] for b in path.detect(frame)], float).reshape(-1, 4)
        seconds += time.perf_counter() - t0
        gt = np.array([p["boxes"][idx] for p in truth["people"] if p["visible"][idx]], float).reshape(-1, 4)
        drawn += len(gt)
        if len(gt) and len(boxes):
            hits += int((iou_matrix(gt, boxes).max(1) >= 0.3).sum())
    frames = max(1, round(truth["num_frames"] * fps / truth["fps"]))
    return hits / max(drawn, 1), 1000 * seconds / frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint dir or models:/ URI (default: untrained classemo_tiny)")
    ap.add_argument("--detectors", default="yunet,haar", help="comma-separated: yunet, haar, haar-profile")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (the CI machine has 2 cores)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each test video")
    ap.add_argument("--fps", type=float, default=5.0, help="analysis frames per second")
    ap.add_argument("--repeats", type=int, default=3, help="runs per video and detector; the median is reported")
    args = ap.parse_args()
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]

    import cv2
    import torch

    from classemo.checkpoint import save_model_checkpoint
    from classemo.synth.classroom import make_classroom_video
    from classemo.faces import FaceSettings
    from classemo.labels import LabelSet
    from classemo.models import create_model
    from classemo.predictor import Predictor

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="classemo-bench-") as tmp:
        root = Path(tmp)
        if args.model:
            predictor = Predictor.from_checkpoint(args.model, device="cpu")
        else:
            model = create_model("classemo_tiny", num_classes=7)
            save_model_checkpoint(model, root / "ckpt", labels=LabelSet.paper(),
                                  face=FaceSettings(size=model.image_size))
            predictor = Predictor.from_checkpoint(root / "ckpt", device="cpu")
        single = root / "single_face_long.mp4"
        loop_video(MEDIA / "single_face.mp4", single, args.seconds)
        videos = [single]
        for faces in (10, 30):
            videos.append(root / f"classroom{faces}.mp4")
            make_classroom_video(videos[-1], scenario="lively", num_students=faces - 1, seconds=args.seconds, fps=30,
                                 seed=0)
        rows = [speed(v, predictor, d, args.fps, root / "out", args.repeats) for v in videos for d in detectors]
        recalls = {}
        for k, scenario in enumerate(SCENARIOS):
            video = root / f"recall_{scenario}.mp4"
            truth = make_classroom_video(video, scenario=scenario, num_students=29, seconds=args.seconds, fps=10,
                                         seed=100 + k)
            recalls[scenario] = {d: recall(video, truth, d, args.fps, predictor.face_settings) for d in detectors}
    print(f"model: {predictor.info.get('architecture')} ({args.model or 'untrained'}), dtype "
          f"{str(predictor.dtype).removeprefix('torch.')}, threads {args.threads}, analysis fps {args.fps}, median of "
          f"{args.repeats}; {time.perf_counter() - t_start:.0f} s in all")
    print("\n| video | detector | length s | wall s | × real time (runs) | faces/frame | tracks "
          "| decode | detect | track | pose | crop | model | pose ms/face |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        runs = ", ".join(f"{x:.2f}" for x in r["all_x"])
        print(f"| {r['video']} | {r['detector']} | {r['duration_s']:.1f} | {r['wall_s']:.1f} | "
              f"**{r['x_realtime']:.2f}** ({runs}) | {r['faces']:.1f} | {r['tracks']} | "
              + " | ".join(f"{r[k]:.0%}" for k in STAGES) + f" | {r['pose_ms_per_face']:.1f} |")
    print("\n| 30-face classroom | " + " | ".join(f"{d} recall | {d} ms/frame" for d in detectors) + " |")
    print("|---|" + "---|---|" * len(detectors))
    for scenario, by_det in recalls.items():
        print(f"| {scenario} | " + " | ".join(f"{rec:.1%} | {ms:.0f}" for rec, ms in by_det.values()) + " |")


if __name__ == "__main__":
    main()
