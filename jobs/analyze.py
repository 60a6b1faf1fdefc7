"""The batch analysis job: many lesson videos -> each lesson's report -> a cross-lesson overview, on Ray Data.

    python jobs/analyze.py SRC --out DST [--model models:/classemo@champion; default: the built-in model]
    ray job submit --working-dir . -- python jobs/analyze.py s3://bucket/lessons/ --model ... --out s3://bucket/out

SRC is a folder or S3 prefix (videos found recursively), one video, or a list file (a path or URI a line); DST a
folder or S3 prefix. Each lesson gets DST/<lesson>/timeline.parquet, summary.json and report.html, written by the
same library code as `classemo analyze` and then a `_SUCCESS` marker; DST/rejected.csv lists the videos that gave
no report and why; DST/lessons.parquet and DST/overview.html compare the lessons. A rerun skips the lessons whose
marker matches the model and options, so a killed job is finished by running it again.

The stages (`classemo.video.stages`), one Ray Data row per chunk of face crops:

1. Ray tasks, 1 CPU, one per video: fetch from S3, decode, detect, track and crop (`FaceObserver`), yielding the
   video's chunks as they fill, so a long lesson streams through in bounded memory.
2. An actor pool, one GPU per actor where the cluster has GPUs, else CPU: the spatial stream (`embed_chunks`), which
   is almost all of the model's compute; rows from many videos share an actor call.
3. The driver: each lesson's chunks back in order (`LessonAssembly`: windows, the temporal part), the outputs
   (`write_analysis`), the marker; the progress bar counts lessons.

Parity with `classemo analyze`: chunks are cut where `analyze_video` calls the model, and by default every chunk is
its own `embed_frames` call, so features are bit-identical to the CLI's (CPU kernels pick their blocking by batch
size, so a fused batch differs in the last float bits; `--fuse-videos` trades that for bigger GPU batches). Windows
need every chunk of a video in order, which Ray Data's actor pool does not guarantee, so the window buffer and the
small temporal part run where all of a lesson's chunks meet: on the driver, per lesson, as its chunks arrive. Only
the per-crop features travel there (D floats a face, not the crops), and a lesson's memory there is bounded by its
open windows. The alternative, one row per video carrying all its crops to one actor, would hold a lesson's crops at
once: 45 minutes at 5 fps with 25 faces of 112 px is ~13 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

if __package__ in (None, ""):  # `python jobs/analyze.py`: make `jobs` importable like under `ray job submit`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classemo.checkpoint import CheckpointError  # noqa: E402
from classemo.video.batch import BatchError, Lesson  # noqa: E402

CRASH_ENV = "CLASSEMO_ANALYZE_CRASH_AFTER"  # tests: fail the driver after this many lessons are written


# ------------------------------------------------------------------------------------------------ Ray stages


def decode_lesson(lesson: dict[str, Any], *, face: dict, fps: float, embed_batch: int) -> Iterator[dict]:
    """flat_map (a task per video): its chunks of face crops as they fill, the last with the video's observation; or
    one row with `error` set when the video cannot be analysed."""
    import cv2

    from classemo.faces import FacePath, FaceSettings
    from classemo.video.batch import fetch
    from classemo.video.stages import FaceObserver
    from classemo.video.track import Tracker

    cv2.setNumThreads(1)  # the task holds one CPU
    name, source = str(lesson["name"]), str(lesson["source"])

    def row(seq: int, chunk: bytes = b"", observation: bytes = b"", error: str = "") -> dict:
        return {"name": name, "source": source, "seq": seq, "chunk": chunk, "observation": observation,
                "error": error, "model_s": 0.0}

    with tempfile.TemporaryDirectory(prefix="classemo-analyze-") as tmp:
        local = source
        try:
            local = str(fetch(source, Path(tmp)))
            observer = FaceObserver(local, FacePath(FaceSettings(**face)), Tracker(), fps=fps, embed_batch=embed_batch)
            for seq, chunk in enumerate(observer):
                obs = pickle.dumps(observer.observation) if chunk.final else b""
                yield row(seq, pickle.dumps(chunk), obs)
        except Exception as e:  # noqa: BLE001 - any failure rejects this video only; the message names the source
            yield row(-1, error=str(e).replace(local, source) or type(e).__name__)


class EmbedChunks:
    """map_batches actor: the spatial features of every chunk in the batch (`classemo.video.stages.embed_chunks`)."""

    def __init__(self, model: list, *, dtype: str, fuse: bool) -> None:
        import ray

        from classemo.predictor import Predictor

        module, config, info = ray.get(model[0])
        self.predictor = Predictor(module, config, info=info, dtype=dtype)  # CUDA when the actor has a GPU
        self.fuse = fuse

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from classemo.video.stages import embed_chunks

        chunks = [pickle.loads(b) if len(b) else None for b in batch["chunk"]]  # None: a rejected video's row
        live = [c for c in chunks if c is not None]
        seconds = embed_chunks(self.predictor, live, fuse=self.fuse)
        crops = max(1, sum(len(c.tracks) for c in live))
        return {**batch, "chunk": np.array([b"" if c is None else pickle.dumps(c) for c in chunks], dtype=object),
                "model_s": np.array([0.0 if c is None else seconds * len(c.tracks) / crops for c in chunks])}


# ----------------------------------------------------------------------------------------------------- driver


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("src", help="folder, s3:// prefix, one video, or a list file (a path or URI a line)")
    p.add_argument("--model", default="builtin",
                   help="builtin (default: the model shipped with classemo), a checkpoint dir, models:/classemo@champion"
                        " or runs:/<id>/model")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--fps", type=float, default=5.0, help="analysis frames per second (default 5)")
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the model's num_frames)")
    p.add_argument("--stride", type=int, default=None, help="frames between windows (default: half a window)")
    p.add_argument("--segment-s", type=float, default=60.0, help="segment length in seconds (default 60)")
    p.add_argument("--teacher", default="auto", help="auto, none, a track id, or region:x0,y0,x1,y1")
    p.add_argument("--detector", default=None, help="yunet, haar or haar-profile (default: the model's own)")
    p.add_argument("--embed-batch", type=int, default=64, help="face crops per model call (default 64, as analyze)")
    p.add_argument("--dtype", default="auto", help="spatial stream dtype: auto (bf16 where native), float32, bf16")
    p.add_argument("--actors", type=int, default=0, help="model actors (default: one per GPU, else 1..CPUs/2)")
    p.add_argument("--chunks-per-call", type=int, default=8, help="chunks per actor call (default 8)")
    p.add_argument("--fuse-videos", action="store_true", help="one forward pass per actor call (GPU throughput; "
                                                                "features then match analyze to ~1e-6, not bitwise)")
    p.add_argument("--address", default="", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-cpus", type=int, default=0, help="logical CPUs of a local Ray (default 2x cores, min 4)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p.parse_args(argv)


class Job:
    """What the driver resolves before any Ray work: lessons, model, options. Raises BatchError, CheckpointError or
    ValueError (one line each) for a bad SRC, DST, model or option."""

    def __init__(self, args: argparse.Namespace) -> None:
        from dataclasses import replace

        from classemo.analytics import segment_bounds
        from classemo.faces import warn_if_different
        from classemo.model_source import load_model_source
        from classemo.video.batch import is_complete, list_lessons, open_location, settings_of
        from classemo.video.pipeline import parse_teacher, resolve_window

        self.args = args
        segment_bounds(1.0, args.segment_s)
        parse_teacher(args.teacher)
        if args.fps <= 0 or args.embed_batch < 1 or args.chunks_per_call < 1:
            raise ValueError("--fps, --embed-batch and --chunks-per-call must be positive")
        open_location(args.out)
        self.lessons = list_lessons(args.src)
        self.model = load_model_source(args.model)
        self._predictors: dict[str, Any] = {}
        base = self.predictor_for("float32")
        self.face = base.face_settings
        if args.detector:  # as `classemo analyze --detector`
            self.face = replace(self.face, detector=args.detector, align=self.face.align and args.detector == "yunet")
            warn_if_different(self.face, base.face_settings, "jobs/analyze.py")
        self.window, self.stride = resolve_window(base, args.window, args.stride)
        self.settings = settings_of(base, face=self.face.to_dict(), fps=args.fps, window=self.window,
                                    stride=self.stride, segment_s=args.segment_s, teacher=str(args.teacher))
        done = {ls.name for ls in self.lessons if is_complete(args.out, ls.name, self.settings)}
        self.todo = [ls for ls in self.lessons if ls.name not in done]
        self.done = [ls for ls in self.lessons if ls.name in done]

    def predictor_for(self, dtype: str) -> Any:
        """A CPU Predictor whose weights are cast as an actor's with this spatial dtype were (the temporal part)."""
        from classemo.predictor import Predictor

        if dtype not in self._predictors:
            module, config, info = self.model
            self._predictors[dtype] = Predictor(module, config, info=info, device="cpu", dtype=dtype)
        return self._predictors[dtype]


def build_dataset(job: Job) -> Any:
    """Ray Data: lessons -> decode tasks -> model actor pool, one row per chunk."""
    import ray
    import torch

    from classemo.precision import inference_dtype

    args = job.args
    gpus = int(ray.cluster_resources().get("GPU", 0))
    dtype = args.dtype
    if dtype == "auto" and not gpus:  # decided once, so that every CPU actor embeds in the same dtype
        dtype = str(inference_dtype("auto", torch.device("cpu"), job.model[0])[0]).removeprefix("torch.")
    items = [{"name": ls.name, "source": ls.source} for ls in job.todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))  # one decode task per video
    # flat_map: its output row count is open, so Ray Data does not fuse it into the actor pool's operator (it would
    # run the decoding inside the model actors); decoding stays in tasks spread over every node's CPUs.
    # max_retries: Ray Data retries a task whose worker died forever by default, so a video that crashes its decoder
    # would stall the batch; after 3 tries its block is dropped (max_errored_blocks) and the video rejected. Ray 2.60
    # has no named parameter for it yet and warns about the generic one.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = ds.flat_map(decode_lesson, num_cpus=1, max_retries=3,
                         fn_kwargs={"face": job.face.to_dict(), "fps": args.fps, "embed_batch": args.embed_batch})
    if gpus:
        pool, resources = ray.data.ActorPoolStrategy(size=args.actors or gpus), {"num_gpus": 1}
    else:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=args.actors or max(1, cpus // 2))
        resources = {"num_cpus": 1}
    return ds.map_batches(EmbedChunks, batch_size=args.chunks_per_call, compute=pool, **resources,
                          fn_constructor_kwargs={"model": [ray.put(job.model)], "dtype": dtype,
                                                 "fuse": args.fuse_videos})


def run(job: Job) -> dict[str, Any]:
    """Analyse the lessons still to do, then write rejected.csv, lessons.parquet and overview.html."""
    from classemo.video.batch import LessonAssembly, no_face_reason, publish, read_bytes, write_bytes, write_rejected
    from classemo.video.overview import lessons_table, overview_html
    from classemo.video.pipeline import write_analysis

    args = job.args
    print(f"[classemo] {len(job.lessons)} lessons in {args.src}: {len(job.done)} already done, "
          f"{len(job.todo)} to analyse", flush=True)
    summaries: dict[str, dict] = {}
    rejected: dict[str, tuple[str, str]] = {}
    crash_after = int(os.environ.get(CRASH_ENV, "0"))

    def finish(lesson: Lesson, asm: LessonAssembly) -> None:
        with tempfile.TemporaryDirectory(prefix="classemo-lesson-") as tmp:
            res = write_analysis(tmp, lesson.source, asm.observation, asm.rows, job.predictor_for("float32"),
                                 fps=args.fps, window=job.window, stride=job.stride, segment_s=args.segment_s,
                                 teacher=args.teacher, model_s=asm.seconds)
            if res.summary["no_faces"]:
                rejected[lesson.name] = (lesson.source, no_face_reason(res.summary))
                return
            publish(Path(tmp), args.out, lesson, job.settings)
            summaries[lesson.name] = json.loads(res.summary_path.read_text())

    if job.todo:
        from jobs.train import init_ray
        from tqdm.auto import tqdm

        from classemo.config import JobConfig, RunConfig

        init_ray(JobConfig(run=RunConfig(ray_address=args.address, ray_num_cpus=args.num_cpus)))
        configure_data()
        by_name = {ls.name: ls for ls in job.todo}
        assemblies = {ls.name: LessonAssembly(job.window, job.stride, job.predictor_for) for ls in job.todo}
        bar = tqdm(total=len(job.todo), unit="lesson", desc="lessons", disable=not args.progress, dynamic_ncols=True)
        rows = iter(build_dataset(job).iter_rows())
        # Closing `rows` on a crash stops the execution (its tasks and actors) at once.
        with contextlib.closing(rows), bar, torch_threads(1):
            for row in rows:
                name = str(row["name"])
                asm = assemblies.get(name)
                if asm is None:
                    continue  # a lesson already rejected
                if row["error"]:
                    rejected[name] = (str(row["source"]), str(row["error"]))
                else:
                    asm.add(int(row["seq"]), pickle.loads(row["chunk"]),
                            pickle.loads(row["observation"]) if len(row["observation"]) else None,
                            float(row["model_s"]))
                    if not asm.done:
                        continue
                    try:
                        finish(by_name[name], asm)
                    except Exception as e:  # noqa: BLE001 - e.g. DST unwritable for one lesson: record, go on
                        rejected[name] = (by_name[name].source, f"finishing the analysis failed: {e!r}")
                del assemblies[name]
                bar.update(1)
                bar.set_postfix(rejected=len(rejected))
                if crash_after and len(summaries) >= crash_after:
                    raise RuntimeError(f"{CRASH_ENV}={crash_after}: injected driver failure")
        for name in assemblies:  # a task that failed on every retry yields nothing for its video
            rejected[name] = (by_name[name].source, "the analysis did not finish: a Ray task failed (see its logs)")

    for ls in job.done:  # the marker is written after the summary, so a done lesson has one
        summaries[ls.name] = json.loads(read_bytes(args.out, f"{ls.name}/summary.json"))
    write_rejected(args.out, list(rejected.values()))
    table = lessons_table(summaries)
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    write_bytes(args.out, "lessons.parquet", buf.getvalue())
    write_bytes(args.out, "overview.html", overview_html(summaries, list(rejected.values())).encode())
    new = len(summaries) - len(job.done)
    print(f"[classemo] {new} lessons analysed, {len(job.done)} skipped (done before), {len(rejected)} rejected; "
          f"wrote {args.out.rstrip('/')}/overview.html", flush=True)
    return {"analysed": sorted(set(summaries) - {ls.name for ls in job.done}), "skipped": [ls.name for ls in job.done],
            "rejected": dict(rejected), "lessons": len(table)}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """The driver's model work is the temporal part, ~1% of the model's time; one thread keeps it off the cores that
    the tasks and actors use (with every core, under load, it ran 100x slower on a 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def configure_data() -> None:
    """Ray Data without its own progress bars (the job has one), and a failed block costs one video, not the job."""
    from ray.data import DataContext

    from jobs.train import quiet_data as train_quiet_data

    train_quiet_data()
    DataContext.get_current().max_errored_blocks = -1


def main(argv: Sequence[str] | None = None) -> int:
    from classemo.tracking import absolute_output
    from jobs.paths import persistent_home

    args = parse_args(argv)
    persistent_home()  # under `ray job submit`: a relative --out and the default MLflow store outlive Ray's copy
    args.out = absolute_output(args.out)
    try:
        job = Job(args)
    except (BatchError, CheckpointError, ValueError) as e:
        print(f"classemo batch analyze: error: {e}", file=sys.stderr)
        return 2
    out = run(job)
    return 1 if out["rejected"] and not out["analysed"] and not out["skipped"] else 0  # not one lesson: a failure


if __name__ == "__main__":
    raise SystemExit(main())
