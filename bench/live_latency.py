"""Live-lesson latency: a synthetic classroom served as MJPEG on 127.0.0.1, read by `run_live` (what `classemo live`
runs) for `--minutes`, at `--fps` analysis frames per second.

    python bench/live_latency.py [--students 30] [--fps 5] [--minutes 10] [--model builtin]
    python bench/live_latency.py --serve-rooms 1 2 4 --minutes 3    # the same classroom, N at once, through Serve

It reports, from the states the page would get (one a second):
- state age: wall seconds from the capture of the newest analysed frame to the state (p50, p95, max), per minute, so
  a growing lag shows as a rising row;
- the drop rate: sampled frames the analysis could not take (the capture thread keeps the newest two);
- the process's RSS at minute 1 and at the end (a leak shows as growth).
With `--serve-rooms`, a local Ray runs the Serve application (serve/app.py, one model replica) and N copies of the
classroom are posted to /v1/streams at once; the states are read over HTTP each second, as the page reads them, and
the state age is the one each state carries (capture to state, in the stream actor).
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
    ap.add_argument("--serve-rooms", type=int, nargs="*", help="through Serve: this many classrooms at once, per run")
    args = ap.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "classroom.mp4"
        make_classroom_video(video, scenario="lively", num_students=args.students, seconds=60, fps=args.camera_fps,
                             seed=0, size=(width, height))
        cap, frames = cv2.VideoCapture(str(video)), []
        while (frame := cap.read()[1]) is not None:
            frames.append(frame)
        if args.serve_rooms:
            through_serve(args, frames, Path(tmp))
            return
        predictor = Predictor.from_checkpoint(args.model)
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


def through_serve(args: argparse.Namespace, frames: list, tmp: Path) -> None:
    """N classrooms at once through the Serve application's /v1/streams, one run per N."""
    import os

    import httpx
    import ray
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from mjpeg import MjpegServer

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(ROOT))
    from jobs.train import local_system_config

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             _system_config=local_system_config(4))
    serve.start(http_options={"host": "127.0.0.1", "port": 8765})
    app_args = dict(model_uri=args.model, min_replicas=1, max_replicas=1, model_num_cpus=1, torch_threads=2,
                    video_fps=args.fps, batch_wait_timeout_s=0.05, streams_uri=str(tmp / "streams"))
    app = {"name": "classemo", "route_prefix": "/", "import_path": "serve.app:build_app", "args": app_args}
    _get_global_client().deploy_apps(ServeDeploySchema(applications=[app]), _blocking=True)
    print(f"{args.students}-student classroom, {frames[0].shape[1]}x{frames[0].shape[0]} at {args.camera_fps:g} fps "
          f"over MJPEG, analysed at {args.fps:g} fps, {args.minutes:g} min per run, model {args.model}, one model "
          "replica (2 threads)")
    print("| rooms | states | state age p50 s | p95 s | max s | dropped (of sampled) | people in view (median) |")
    print("|---|---|---|---|---|---|---|")
    with httpx.Client(base_url="http://127.0.0.1:8765", timeout=120) as client:
        for rooms in args.serve_rooms:
            servers = [MjpegServer(fps=args.camera_fps, per_connection=10**9, frames=frames) for _ in range(rooms)]
            ids = [client.post("/v1/streams", json={"url": s.url, "name": f"room {i}"}).json()["stream_id"]
                   for i, s in enumerate(servers)]
            seen: dict[str, float] = {}
            ages, people, last = [], [], {}
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                for sid in ids:
                    state = client.get(f"/v1/streams/{sid}").json()["state"]
                    if state and state["time"] != seen.get(sid) and state["health"]["state_age_s"] is not None:
                        seen[sid] = state["time"]
                        ages.append(state["health"]["state_age_s"])
                        people.append(len(state["people"]))
                        last[sid] = state["health"]
                time.sleep(1.0)
            for sid in ids:
                client.delete(f"/v1/streams/{sid}")
            for s in servers:
                s.close()
            a = np.array(ages)
            dropped = sum(h["dropped"] for h in last.values())
            analysed = sum(h["analysed"] for h in last.values())
            print(f"| {rooms} | {len(a)} | {np.median(a):.2f} | {np.percentile(a, 95):.2f} | {a.max():.2f} | "
                  f"{100 * dropped / max(dropped + analysed, 1):.1f}% | {statistics.median(people):.0f} |", flush=True)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
