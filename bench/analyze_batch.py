"""Batch analysis throughput: jobs/analyze.py on 1 and 2 Ray nodes, and `classemo analyze` in a loop, on one input.

The input is a handful of synthetic lessons (`make_classroom_video`, lively/dull/difficult in turn). Each
configuration analyses all of them from scratch into a fresh output folder; the figures are:
  * wall s: the job's `run` (Ray Data start, actor start-up, every lesson, the overview), not the cluster's start;
  * lessons/hour and x real time (seconds of video analysed per second of wall time);
  * the scaling ratio: 2-node throughput over 1-node throughput.
Each node is a `ray.cluster_utils.Cluster` node on 127.0.0.1 with --cpus logical CPUs, so "2 nodes" on one machine
share its cores: there the ratio shows what the job's spread costs or gains at equal hardware, not multi-machine
scaling.

    .venv/bin/python bench/analyze_batch.py [--lessons 6] [--seconds 20] [--students 8] [--cpus 2]

Without --model an untrained classemo_tiny checkpoint is used (the forward pass costs the same whatever it learned).
Prints a Markdown table for docs/benchmarks-video.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `jobs` as under `ray job submit`

SCENARIOS = ("lively", "dull", "difficult")


def start_nodes(num_nodes: int, cpus: int) -> object:
    """A head (+ workers) on loopback, as tests/jobs/test_multinode_s3.py starts them, and connect to it."""
    import ray
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False  # keep ray.init on 127.0.0.1 (see test_multinode_s3.py)
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "node_ip_address": "127.0.0.1",
                                                            "include_dashboard": False})
    for _ in range(num_nodes - 1):
        cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    return cluster


def run_job(src: Path, model: str, out: Path, num_nodes: int, cpus: int) -> float:
    """Wall seconds of one job run on a fresh cluster of `num_nodes` nodes."""
    import ray

    from jobs.analyze import Job, parse_args, run

    cluster = start_nodes(num_nodes, cpus)
    try:
        job = Job(parse_args([str(src), "--model", model, "--out", str(out), "--no-progress", "--dtype", "float32"]))
        t0 = time.perf_counter()
        res = run(job)
        wall = time.perf_counter() - t0
        assert not res["rejected"], res["rejected"]
        return wall
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[attr-defined]


def run_loop(src: Path, model: str, out: Path) -> float:
    """Wall seconds of `classemo analyze`'s function on each lesson in turn, in this process (threads: all cores)."""
    from classemo.predictor import Predictor
    from classemo.video.pipeline import analyze_video

    predictor = Predictor.from_checkpoint(model, device="cpu", dtype="float32")
    t0 = time.perf_counter()
    for video in sorted(src.glob("*.mp4")):
        analyze_video(video, predictor, out_dir=out / video.stem, progress=False, faces=predictor.face_settings)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint dir or models:/ URI (default: untrained classemo_tiny)")
    ap.add_argument("--lessons", type=int, default=6, help="synthetic lessons")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each lesson")
    ap.add_argument("--students", type=int, default=8, help="students per lesson (plus the teacher)")
    ap.add_argument("--cpus", type=int, default=2, help="logical CPUs per Ray node")
    args = ap.parse_args()

    from classemo.checkpoint import save_model_checkpoint
    from classemo.faces import FaceSettings
    from classemo.labels import LabelSet
    from classemo.models import create_model
    from classemo.synth.classroom import make_classroom_video

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="classemo-bench-") as tmp:
        root = Path(tmp)
        model = args.model
        if not model:
            net = create_model("classemo_tiny", num_classes=7)
            model = str(save_model_checkpoint(net, root / "ckpt", labels=LabelSet.paper(),
                                              face=FaceSettings(size=net.image_size)))
        src = root / "lessons"
        for k in range(args.lessons):
            make_classroom_video(src / f"lesson{k}.mp4", scenario=SCENARIOS[k % 3], num_students=args.students,
                                 seconds=args.seconds, fps=25, seed=k, size=(960, 540))
            (src / f"lesson{k}.json").unlink()
        video_s = args.lessons * args.seconds
        rows = [("`classemo analyze`, one process, lesson after lesson", run_loop(src, model, root / "loop"))]
        for nodes in (1, 2):
            rows.append((f"jobs/analyze.py, {nodes} node{'s' if nodes > 1 else ''} x {args.cpus} CPUs",
                         run_job(src, model, root / f"out{nodes}", nodes, args.cpus)))
    print(f"{args.lessons} lessons x {args.seconds:g} s (960x540, 25 fps, teacher + {args.students} students), "
          f"analysis 5 fps, {model if args.model else 'untrained classemo_tiny'}, float32; "
          f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}); "
          f"{time.perf_counter() - t_start:.0f} s in all\n")
    print("| configuration | wall s | lessons/hour | × real time |")
    print("|---|---|---|---|")
    for name, wall in rows:
        print(f"| {name} | {wall:.1f} | {3600 * args.lessons / wall:.0f} | {video_s / wall:.2f} |")
    print(f"\nscaling ratio, 2 nodes / 1 node: {rows[1][1] / rows[2][1]:.2f}")


if __name__ == "__main__":
    main()
