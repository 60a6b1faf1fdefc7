"""Load test of the classemo Serve application against the Predictor called directly, in the same run.

At each concurrency (default 1, 8, 32) N requests, each one clip of 16 base64-PNG frames, go to POST /v1/clips
over loopback HTTP from that many concurrent clients; then the same clips go through `Predictor.predict` directly
in batches as large as the Serve batches can be (min(concurrency, max_batch_size)), frame decoding included on
both sides. Reports req/s, clips/s, latency p50/p99, the Serve/direct throughput ratio and the share of the Serve
p50 latency that is overhead (HTTP, base64, Ray hops, batch wait) rather than model compute.

    .venv/bin/python bench/serve_load.py                      # untrained classemo_tiny with num_frames=16
    .venv/bin/python bench/serve_load.py --checkpoint runs/x  # a trained checkpoint or models:/ URI
"""

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def make_checkpoint(directory: Path, num_frames: int, preset: str = "classemo_tiny") -> Path:
    """An untrained preset (weights do not change the cost of a forward pass)."""
    import torch

    from classemo.labels import LabelSet
    from classemo.models import create_model
    from classemo.checkpoint import save_model_checkpoint

    torch.manual_seed(0)
    model = create_model(preset, num_classes=7, num_frames=num_frames)
    return save_model_checkpoint(model, directory, labels=LabelSet.paper())


def make_clips(num_clips: int, num_frames: int, size: int, seed: int = 0) -> list[list[str]]:
    """Distinct clips of random-pixel frames as base64 PNG (content does not change the cost)."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(num_clips):
        frames = []
        for _ in range(num_frames):
            ok, buf = cv2.imencode(".png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            assert ok
            frames.append(base64.b64encode(buf.tobytes()).decode())
        clips.append(frames)
    return clips


JSON = {"content-type": "application/json"}


async def serve_level(url: str, clips: list[list[str]], concurrency: int, requests: int) -> dict:
    """`requests` POSTs from `concurrency` clients; latency per request and total throughput."""
    import httpx

    latencies: list[float] = []
    batch_sizes: list[int] = []
    next_index = 0

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < requests:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            r = await c.post("/v1/clips", content=bodies[i % len(bodies)], headers=JSON)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            batch_sizes.append(r.json()["predictions"][0]["batch_size"])

    # Bodies are encoded once, before the clock starts: a real client runs elsewhere, and json.dumps of 16 base64
    # frames per request would otherwise bill the client's CPU to Serve on the same 2 cores.
    bodies = [json.dumps({"clips": [{"frames": clip}]}).encode() for clip in clips]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(concurrency)])
        wall = time.perf_counter() - t0
    return {"requests": requests, "wall_s": wall, "req_s": requests / wall, "clips_s": requests / wall,
            "p50_ms": 1e3 * _percentile(latencies, 50), "p99_ms": 1e3 * _percentile(latencies, 99),
            "mean_batch": statistics.fmean(batch_sizes)}


def direct_level(predictor, clips: list[list[str]], batch: int, num_clips: int) -> dict:
    """The same clips through `Predictor.predict` in batches of `batch`, decoding included."""
    from classemo.data.transforms import decode_image

    latencies = []
    t0 = time.perf_counter()
    for start in range(0, num_clips, batch):
        idx = range(start, min(start + batch, num_clips))
        t1 = time.perf_counter()
        decoded = [[decode_image(base64.b64decode(f)) for f in clips[i % len(clips)]] for i in idx]
        predictor.predict(decoded)
        latencies.append(time.perf_counter() - t1)
    wall = time.perf_counter() - t0
    return {"clips": num_clips, "batch": batch, "wall_s": wall, "clips_s": num_clips / wall,
            "p50_ms": 1e3 * _percentile(latencies, 50), "p99_ms": 1e3 * _percentile(latencies, 99)}


def main() -> None:
    """Run the benchmark and print a JSON record and a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint dir or MLflow URI; default: untrained classemo_tiny")
    parser.add_argument("--preset", default="classemo_tiny", help="model preset when no --checkpoint is given")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (face crops)")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait", type=float, default=0.005, help="batch_wait_timeout_s")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both sides); default: torch's")
    parser.add_argument("--replica-threads", type=int, default=None,
                        help="torch threads in the model replica only (default: --threads); on a small CPU box, "
                             "fewer than the cores leaves room for the HTTP proxy and the ingress")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import ray
    import torch
    from ray import serve

    sys.path.insert(0, str(REPO))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    from classemo.predictor import Predictor
    from serve.app import build_app
    from serve.schemas import ServeArgs

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    tmp = tempfile.TemporaryDirectory(prefix="classemo-bench-")
    source = args.checkpoint or str(make_checkpoint(Path(tmp.name) / "model", args.frames, args.preset))
    clips = make_clips(32, args.frames, args.size)
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    num_gpus = 1.0 if (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda") else 0.0
    serve_args = ServeArgs(model_uri=source, device=args.device, max_batch_size=args.max_batch_size,
                           batch_wait_timeout_s=args.batch_wait, min_replicas=1, max_replicas=1,
                           max_ongoing_requests=max(64, 2 * args.max_batch_size), max_queued_requests=-1,
                           torch_threads=args.replica_threads or threads, model_num_cpus=1, model_num_gpus=num_gpus,
                           max_clips_per_request=64)
    serve.run(build_app(serve_args), name="classemo", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    predictor = Predictor.from_checkpoint(source, device=args.device, batch_size=args.max_batch_size)

    asyncio.run(serve_level(url, clips, 4, 16))  # warm-up: connections, first batches
    direct_level(predictor, clips, args.max_batch_size, args.max_batch_size)
    rows = []
    for c in args.concurrency:
        s = asyncio.run(serve_level(url, clips, c, max(args.requests, 2 * c)))
        batch = min(c, args.max_batch_size)
        d = direct_level(predictor, clips, batch, max(args.requests, 2 * c))
        rows.append({"concurrency": c, "serve": s, "direct": d, "ratio": s["clips_s"] / d["clips_s"],
                     # Latency a request would have with zero overhead: one direct batch of the same size.
                     "overhead_share": max(0.0, 1 - d["p50_ms"] / s["p50_ms"])})
    serve.shutdown()
    ray.shutdown()

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    record = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": threads,
                          "replica_torch_threads": args.replica_threads or threads,
                          "gpu": gpu, "device": str(predictor.device)},
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "preset": None if args.checkpoint else args.preset, "frames": args.frames,
              "size": args.size, "max_batch_size": args.max_batch_size, "batch_wait_s": args.batch_wait,
              "rows": rows}
    print(json.dumps(record, indent=2))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
    print("\n| concurrency | Serve req/s | Serve clips/s | p50 ms | p99 ms | mean batch | direct clips/s "
          "| direct p50 ms (batch) | ratio | overhead share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s, d = r["serve"], r["direct"]
        print(f"| {r['concurrency']} | {s['req_s']:.1f} | {s['clips_s']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
              f"| {s['mean_batch']:.1f} | {d['clips_s']:.1f} | {d['p50_ms']:.1f} ({d['batch']}) | {r['ratio']:.2f} "
              f"| {100 * r['overhead_share']:.0f}% |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
