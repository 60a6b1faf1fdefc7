"""classemo on Ray Serve: a FastAPI ingress deployment in front of a batched, autoscaled model deployment.

Launch with `serve run serve/config.yaml` (or `serve deploy serve/config.yaml` to a running cluster); the
`args:` block is validated by `ServeArgs`. The model deployment owns one `Predictor` (the same loader and
preprocessing as training and batch analysis) and batches clips across requests with `@serve.batch`; its
`user_config` (model URI, batch size, batch wait) changes live through `reconfigure`, which loads the new model
before swapping it in, so requests keep being answered. All input checks happen before the model sees a frame,
and the model also checks each clip on its own, so one bad clip in a batch never fails its neighbours.
"""

import asyncio
import base64
import binascii
import json
import logging
import os
import tempfile
import time
import uuid
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.schemas import (
    BatchStats,
    ClipIn,
    ClipOut,
    ClipsRequest,
    ClipsResponse,
    ErrorOut,
    FaceBoxOut,
    Health,
    ModelInfo,
    ModelUserConfig,
    ServeArgs,
    VideoJob,
)

log = logging.getLogger("classemo.serve")

DEBUG_ENV = "CLASSEMO_SERVE_DEBUG"
VIDEO_PATH = "/v1/videos"
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (413, 415, 422, 503)}


def _provenance(predictor: Any) -> dict[str, str | None]:
    """Where the served model came from (`Predictor.info`), as strings for JSON."""
    keys = ("source", "registered_model", "version", "alias", "run_id")
    return {k: None if predictor.info.get(k) is None else str(predictor.info[k]) for k in keys}


# -- model deployment ------------------------------------------------------------------------------------------


@serve.deployment(name="ClassEmoModel")
class ClassEmoModel:
    """Holds one `Predictor`; batches clips from concurrent requests into one forward pass."""

    def __init__(self, *, device: str | None = None, dtype: str = "auto", torch_threads: int | None = None,
                 debug: bool = False) -> None:
        """Start empty: the model is loaded by `reconfigure`, which Serve calls with the user_config.

        Args:
            device: Torch device; CUDA when available, else CPU.
            dtype: Predictor dtype: "auto" (bf16 on CPUs/GPUs that support it), "float32" or "bf16".
            torch_threads: `torch.set_num_threads` for this replica (replicas share the host's cores).
            debug: Allow `crash` (tests of replica recovery).
        """
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self._device = device
        self._dtype = dtype
        self._debug = debug
        self._predictor = None
        self._config: ModelUserConfig | None = None
        self._batch_sizes: Counter[int] = Counter()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply a new user_config; a new model URI is loaded off the event loop, then swapped in atomically."""
        from classemo.predictor import Predictor

        cfg = ModelUserConfig.model_validate(user_config)
        if self._config is None or cfg.model_uri != self._config.model_uri or self._predictor is None:
            predictor = await asyncio.to_thread(Predictor.from_checkpoint, cfg.model_uri, device=self._device,
                                                dtype=self._dtype, batch_size=cfg.max_batch_size)
            self._predictor = predictor  # in-flight batches keep the old one they already hold
        else:
            self._predictor.batch_size = cfg.max_batch_size
        self.predict.set_max_batch_size(cfg.max_batch_size)
        self.predict.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self._config = cfg
        log.info("classemo model %s ready (batch %d, wait %.3fs)", cfg.model_uri, cfg.max_batch_size,
                 cfg.batch_wait_timeout_s)

    def check_health(self) -> None:
        """Serve's health check: a replica without a loaded model is unhealthy and gets replaced."""
        if self._predictor is None:
            raise RuntimeError("no model loaded")

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict(self, clips: list[list[np.ndarray]]) -> list[dict[str, Any]]:
        """Predict a batch of clips (each a list of RGB frames); a clip that fails its checks gets an error entry.

        Args:
            clips: The clips that arrived within one batch window, one per caller.

        Returns:
            Per clip either `ClipPrediction.to_dict(labels)` plus `batch_size` and the model's provenance
            (`model`), or `{"error": message}`.
        """
        from classemo.data.transforms import FrameError, validate_frames

        predictor = self._predictor  # a reconfigure during this batch swaps the attribute, not this reference
        good: list[int] = []
        results: list[dict[str, Any]] = [{} for _ in clips]
        for i, clip in enumerate(clips):
            try:
                frames = validate_frames(clip, where="clip")
            except FrameError as e:
                results[i] = {"error": str(e)}
                continue
            if len(frames) > predictor.num_frames:
                results[i] = {"error": f"{len(frames)} frames, more than the model's limit of "
                                       f"num_frames={predictor.num_frames}; split or subsample the clip"}
            else:
                good.append(i)
        self._batch_sizes[len(clips)] += 1
        if good:
            preds = await asyncio.to_thread(predictor.predict, [clips[i] for i in good])
            model = _provenance(predictor)
            for i, pred in zip(good, preds):
                results[i] = {**pred.to_dict(predictor.labels), "batch_size": len(clips), "model": model}
        return results

    def info(self) -> dict[str, Any]:
        """Model provenance, labels and preprocessing (GET /v1/model)."""
        p = self._predictor
        if p is None:
            raise RuntimeError("no model loaded")
        return {**_provenance(p), "architecture": p.info.get("architecture"), "labels": list(p.labels),
                "preprocessing": dict(p.preprocessing),
                "num_frames": int(p.num_frames), "device": str(p.device),
                "dtype": str(p.dtype).removeprefix("torch."), "dtype_calibration": p.dtype_calibration}

    async def crop_faces(self, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[dict[str, int] | None]]:
        """The largest face of each whole RGB frame, cropped by this model's face path (its training data's detector,
        alignment, margin and size); a frame without a face is used whole, with None for its box."""
        found = await asyncio.to_thread(self._predictor.largest_face_crops, frames)
        return [c for c, _ in found], [None if b is None else {"x": b.x, "y": b.y, "w": b.w, "h": b.h}
                                       for _, b in found]

    def stats(self) -> dict[str, Any]:
        """Batch sizes this replica has run (GET /v1/stats)."""
        cfg = self._config
        return {"replica": serve.get_replica_context().replica_tag, "batches": sum(self._batch_sizes.values()),
                "clips": sum(k * v for k, v in self._batch_sizes.items()),
                "max_batch_size_seen": max(self._batch_sizes, default=0), "histogram": dict(self._batch_sizes),
                "max_batch_size": cfg.max_batch_size if cfg else 0,
                "batch_wait_timeout_s": cfg.batch_wait_timeout_s if cfg else 0.0}

    async def analyze_video(self, data: bytes, suffix: str, fps: float) -> dict[str, Any]:
        """Run `classemo.video.pipeline.analyze_video` on uploaded bytes with this replica's model.

        Returns:
            `summary` (as written to summary.json, which holds the per-person tracks) and `timeline` rows.
        """
        return await asyncio.to_thread(self._analyze_video, data, suffix, fps)

    def _analyze_video(self, data: bytes, suffix: str, fps: float) -> dict[str, Any]:
        from classemo.video.pipeline import analyze_video

        with tempfile.TemporaryDirectory(prefix="classemo-video-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            result = analyze_video(path, self._predictor, out_dir=Path(tmp) / "out", fps=fps, progress=False)
            summary = json.loads(result.summary_path.read_text())
            summary.get("video", {})["path"] = f"upload{suffix}"  # the temp path means nothing to the client
            timeline = json.loads(result.timeline.to_json(orient="records"))
        return {"summary": summary, "timeline": timeline}

    def crash(self) -> None:
        """Kill this replica's process (debug only): Serve must notice and replace it."""
        if not self._debug:
            raise RuntimeError("debug routes are disabled")
        os._exit(1)


# -- ingress ---------------------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, by Content-Length up front and by bytes actually received.

    The limits live on `app.state` (set by the ingress replica from its args), so the module-level app stays
    declarative.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        limit = state.max_video_bytes if scope["path"].startswith(VIDEO_PATH) else state.max_body_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length and (not length.isdigit() or int(length) > limit):
            detail = (f"payload of {length} bytes is larger than the limit of {limit} bytes" if length.isdigit()
                      else f"invalid Content-Length header {length!r}")
            await JSONResponse({"detail": detail}, 413 if length.isdigit() else 400)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body read, so FastAPI turns it into this 413 response.
                    raise HTTPException(413, f"payload is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


app = FastAPI(title="classemo", version="1.0",
              description="Classroom emotion recognition: clip classification with valence/arousal, and classroom "
                          "video analytics. See docs/serving.md.")
app.add_middleware(BodyLimit)


def _decode_frame(text: str, where: str, args: ServeArgs) -> np.ndarray:
    """Base64 PNG/JPEG -> (H, W, 3) uint8 RGB, decoded once (OpenCV, as in training), with a 422 naming the
    frame."""
    import cv2

    from classemo.data.transforms import ImageDecodeError, imdecode

    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise HTTPException(422, f"{where}: not valid base64 ({e})") from None
    try:
        raw = imdecode(data, cv2.IMREAD_UNCHANGED)  # one decode: the result also tells what was sent
    except ImageDecodeError as e:
        raise HTTPException(422, f"{where}: {e}") from None
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    if channels not in (1, 3) or raw.dtype != np.uint8:
        raise HTTPException(422, f"{where}: image has {channels} channel(s) of {raw.dtype}; send 8-bit RGB or "
                                 "greyscale (no alpha)")
    image = cv2.cvtColor(raw, cv2.COLOR_GRAY2RGB if channels == 1 else cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    if min(h, w) < args.min_image_side or max(h, w) > args.max_image_side:
        raise HTTPException(422, f"{where}: image is {w}x{h} pixels; each side must be between "
                                 f"{args.min_image_side} and {args.max_image_side}")
    return image


def _unavailable(e: Exception) -> HTTPException:
    """503 with Retry-After for load shedding or a replica that is being replaced."""
    retry = str(max(1, round(app.state.retry_after_s)))
    if isinstance(e, BackPressureError):
        detail = "the model is overloaded (request queue full); retry later"
    else:
        detail = f"the model replica is unavailable ({type(e).__name__}); retry later"
    return HTTPException(503, detail, headers={"Retry-After": retry})


@serve.deployment(name="APIGateway")
@serve.ingress(app)
class APIGateway:
    """HTTP front: validates and decodes input, fans clips out to the model deployment, runs video jobs."""

    def __init__(self, model: DeploymentHandle, args: dict[str, Any]) -> None:
        """Keep the model handle and the launch args (limits, debug flag).

        Args:
            model: Handle of the `ClassEmoModel` deployment.
            args: `ServeArgs` as a dict.
        """
        self._model = model
        self._args = ServeArgs.model_validate(args)
        self._debug = self._args.debug_routes or os.environ.get(DEBUG_ENV) == "1"
        self._jobs: OrderedDict[str, VideoJob] = OrderedDict()
        app.state.max_body_bytes = self._args.max_body_bytes
        app.state.max_video_bytes = self._args.max_video_bytes
        app.state.retry_after_s = self._args.retry_after_s

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._model, method).remote(*args)
        except (BackPressureError, DeploymentUnavailableError, RayActorError) as e:
            raise _unavailable(e) from None

    def _decode_clip(self, clip: ClipIn, index: int) -> list[np.ndarray]:
        if not clip.frames:
            raise HTTPException(422, f"clip {index} has zero frames; a clip needs at least one")
        return [_decode_frame(f, f"clip {index}, frame {j}", self._args) for j, f in enumerate(clip.frames)]

    async def _crop_faces(self, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[FaceBoxOut | None]]:
        crops, boxes = await self._call("crop_faces", frames)
        return crops, [None if b is None else FaceBoxOut(**b) for b in boxes]

    @app.post("/v1/clips", response_model=ClipsResponse, responses=ERRORS)
    async def predict_clips(self, body: ClipsRequest) -> ClipsResponse:
        """Classify clips of base64 PNG/JPEG frames (face crops, or whole frames with `detect_faces`)."""
        if not body.clips:
            raise HTTPException(422, "no clips: send at least one clip")
        if len(body.clips) > self._args.max_clips_per_request:
            raise HTTPException(422, f"{len(body.clips)} clips in one request; the limit is "
                                     f"{self._args.max_clips_per_request}")
        clips = await asyncio.to_thread(lambda: [self._decode_clip(c, i) for i, c in enumerate(body.clips)])
        if body.detect_faces:
            decoded = await asyncio.gather(*[self._crop_faces(frames) for frames in clips])
        else:
            decoded = [(frames, None) for frames in clips]
        outs = await asyncio.gather(*[self._call("predict", frames) for frames, _ in decoded])
        errors = [f"clip {i}: {o['error']}" for i, o in enumerate(outs) if "error" in o]
        if errors:
            raise HTTPException(422, "; ".join(errors))
        # Clips of one request may straddle a model switch; the response names the model of its first clip.
        model = outs[0]["model"]
        preds = [ClipOut(**{k: v for k, v in o.items() if k != "model"}, faces=boxes)
                 for o, (_, boxes) in zip(outs, decoded)]
        return ClipsResponse(model=model, predictions=preds)

    @app.get("/v1/model", response_model=ModelInfo, responses=ERRORS)
    async def model_info(self) -> ModelInfo:
        """The served model: name, version, alias, MLflow run id, labels and preprocessing."""
        return ModelInfo(**await self._call("info"))

    @app.get("/v1/stats", response_model=BatchStats, responses=ERRORS)
    async def stats(self) -> BatchStats:
        """Batch sizes recorded by the model replica that answers (one replica per call)."""
        return BatchStats(**await self._call("stats"))

    @app.get("/healthz", response_model=Health, responses=ERRORS)
    async def healthz(self) -> Health:
        """200 when a model replica answers with a loaded model."""
        info = await self._call("info")
        return Health(status="ok", model=info.get("source"))

    async def _run_job(self, job: VideoJob, data: bytes, suffix: str, fps: float) -> None:
        """Background video job: every outcome, including an unexpected error, ends up in the job for polling."""
        job.status = "running"
        try:
            job.result = await self._call("analyze_video", data, suffix, fps)
            job.status = "done"
        except HTTPException as e:
            job.status, job.error = "failed", str(e.detail)
        except Exception as e:  # noqa: BLE001 - nobody awaits this task; the poller must learn what went wrong
            log.exception("video job %s failed", job.job_id)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"

    @app.post(VIDEO_PATH, response_model=VideoJob, responses=ERRORS)
    async def upload_video(self, file: UploadFile = File(..., description="A video (any format OpenCV reads) or "
                                                                          "an image"),
                           fps: float | None = Query(None, gt=0, le=60, description="Analysis frame rate")
                           ) -> JSONResponse:
        """Analyse a classroom video: short ones inline (200), long ones as a job to poll (202)."""
        from classemo.video.decode import VideoError, probe_video

        data = await file.read()
        if not data:
            raise HTTPException(422, "the uploaded file is empty")
        suffix = Path(file.filename or "").suffix.lower()[:8] or ".mp4"
        if not suffix[1:].isalnum():
            suffix = ".mp4"
        with tempfile.TemporaryDirectory(prefix="classemo-probe-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                info = await asyncio.to_thread(probe_video, path)
            except VideoError as e:
                # VideoError names the temporary path, which means nothing to the client: name its file instead.
                reason = str(e).replace(f"{path}: ", "").replace(str(path), "upload")
                raise HTTPException(415, f"unsupported video {file.filename!r}: {reason}") from None
        job = VideoJob(job_id=uuid.uuid4().hex, status="pending", duration_s=info.duration_s)
        rate = fps or self._args.video_fps
        if info.duration_s <= self._args.inline_video_max_s:
            try:
                job.result = await self._call("analyze_video", data, suffix, rate)
            except ValueError as e:  # VideoError or an invalid setting, raised by the pipeline in the replica
                raise HTTPException(422, f"cannot analyse {file.filename!r}: {e}") from None
            job.status = "done"
            return JSONResponse(job.model_dump(), 200)
        self._jobs[job.job_id] = job
        while len(self._jobs) > self._args.max_video_jobs:
            self._jobs.popitem(last=False)
        asyncio.get_running_loop().create_task(self._run_job(job, data, suffix, rate))
        return JSONResponse(job.model_dump(), 202)

    @app.get(VIDEO_PATH + "/{job_id}", response_model=VideoJob, responses={404: {"model": ErrorOut}})
    async def video_job(self, job_id: str) -> VideoJob:
        """Poll a video job started by POST /v1/videos."""
        if job_id not in self._jobs:
            raise HTTPException(404, f"no video job {job_id!r} (unknown, or expired after "
                                     f"{self._args.max_video_jobs} newer jobs)")
        return self._jobs[job_id]

    @app.post("/debug/crash", include_in_schema=False)
    async def crash(self) -> dict[str, str]:
        """Kill a model replica (only with debug_routes / CLASSEMO_SERVE_DEBUG=1): tests replica recovery."""
        if not self._debug:
            raise HTTPException(404, "Not Found")
        started = time.monotonic()
        try:
            await self._model.crash.remote()
        except RayActorError:
            return {"crashed": "model", "after_s": f"{time.monotonic() - started:.3f}"}
        raise HTTPException(500, "the model replica did not exit")


def build_app(args: ServeArgs) -> serve.Application:
    """Serve application builder (`import_path: serve.app:build_app`); `args` come from config.yaml.

    Args:
        args: The validated launch arguments.

    Returns:
        The bound application: APIGateway -> ClassEmoModel.
    """
    debug = args.debug_routes or os.environ.get(DEBUG_ENV) == "1"
    model = ClassEmoModel.options(
        autoscaling_config={
            "min_replicas": args.min_replicas,
            "max_replicas": args.max_replicas,
            "initial_replicas": args.min_replicas,
            "target_ongoing_requests": args.target_ongoing_requests,
            "upscale_delay_s": args.upscale_delay_s,
            "downscale_delay_s": args.downscale_delay_s,
            "look_back_period_s": args.look_back_period_s,
        },
        max_ongoing_requests=args.max_ongoing_requests,
        max_queued_requests=args.max_queued_requests,
        user_config=args.model_user_config(),
        health_check_period_s=args.health_check_period_s,
        health_check_timeout_s=args.health_check_timeout_s,
        ray_actor_options={"num_cpus": args.model_num_cpus, "num_gpus": args.model_num_gpus},
    ).bind(device=args.device, dtype=args.dtype, torch_threads=args.torch_threads, debug=debug)
    # The ingress does little CPU work per request; it sheds load itself when its own queue is full.
    gateway = APIGateway.options(
        ray_actor_options={"num_cpus": 0.25},
        max_ongoing_requests=max(64, 4 * args.max_ongoing_requests),
        max_queued_requests=args.max_queued_requests,
        backpressure_config={"status_code": 503, "retry_after_s": args.retry_after_s},
    )
    # The ingress does not get the model's user_config fields, so a model switch never restarts it.
    return gateway.bind(model, args.model_dump(exclude=set(args.model_user_config())))
