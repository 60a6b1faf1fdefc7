"""The HTTP front of the classemo Serve application: the FastAPI app, its body limit, and the APIGateway ingress.

All input checks happen here, before the model deployment (`serve.model.ClassEmoModel`) sees a frame: base64 and
image decoding (the same decode as training), image sizes, clip counts and body sizes. Load shedding and a replica
being replaced come back as 503 with Retry-After.
"""

import asyncio
import base64
import binascii
import logging
import tempfile
import time
import uuid
from collections import OrderedDict
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
    ServeArgs,
    VideoJob,
)

log = logging.getLogger("classemo.serve")

VIDEO_PATH = "/v1/videos"
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (413, 415, 422, 503)}


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
    """Base64 PNG/JPEG -> (H, W, 3) uint8 RGB through training's own decode (EXIF orientation applied, greyscale
    expanded, alpha dropped), with a 422 naming the frame."""
    from classemo.data.transforms import decode_image
    from classemo.preprocessing import ImageDecodeError

    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise HTTPException(422, f"{where}: not valid base64 ({e})") from None
    try:
        image = decode_image(data)
    except ImageDecodeError as e:
        raise HTTPException(422, f"{where}: {e}") from None
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
        self._debug = self._args.debug_enabled()
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
