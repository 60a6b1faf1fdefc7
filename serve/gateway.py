"""The HTTP front of the classemo Serve application: the FastAPI app, its body limit, and the APIGateway ingress.

All input checks happen here, before the model deployment (`serve.model.ClassEmoModel`) sees a frame: API keys
(`serve.auth`), base64 and image decoding (the same decode as training), image sizes, clip counts and body sizes.
Load shedding and a replica being replaced come back as 503 with Retry-After. Long videos become durable jobs
(`serve.jobs`): their state lives in a store, not in this replica, so any replica answers for them.
"""

import asyncio
import base64
import binascii
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.auth import KEYS_ENV, ApiKeyAuth, document_bearer, load_key_digests
from classemo.live.page import live_page_html
from serve.jobs import JobNotFound, JobRecord, VideoJobs, now, pinned_model_uri
from serve.streams import ENDED, StreamNotStarted, StreamRecord, Streams
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
    StreamIn,
    StreamOut,
    StreamState,
    VideoJob,
)

log = logging.getLogger("ray.serve")  # Serve's logger: the replica logs, with the replica's id

VIDEO_PATH = "/v1/videos"
STREAM_PATH = "/v1/streams"
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (413, 415, 422, 503)}
NOT_FOUND: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (404, 503)}
T = TypeVar("T")


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
app.add_middleware(ApiKeyAuth)  # added last = outermost: a request without a key is refused before its body is read
document_bearer(app)


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
    """HTTP front: checks keys, validates and decodes input, fans clips out to the model deployment, submits video
    jobs."""

    def __init__(self, model: DeploymentHandle, args: dict[str, Any]) -> None:
        """Keep the model handle and the launch args, load the API keys, and resume the store's unfinished jobs.

        Args:
            model: Handle of the `ClassEmoModel` deployment.
            args: `ServeArgs` as a dict.
        """
        self._model = model
        self._args = ServeArgs.model_validate(args)
        self._debug = self._args.debug_enabled()
        self._jobs = VideoJobs(self._args)
        self._streams = Streams(self._args, serve.get_replica_context().app_name)
        app.state.max_body_bytes = self._args.max_body_bytes
        app.state.max_video_bytes = self._args.max_video_bytes
        app.state.retry_after_s = self._args.retry_after_s
        app.state.api_key_digests = load_key_digests(self._args.api_keys_file)
        if app.state.api_key_digests:
            log.info("API keys on: %d key(s); every route but /healthz and the docs needs 'Authorization: Bearer'",
                     len(app.state.api_key_digests))
        else:
            log.warning("NO API KEYS: the classemo API is unauthenticated; anyone who can reach it can use it. Set "
                        "%s (comma-separated) or api_keys_file before exposing it beyond 127.0.0.1.", KEYS_ENV)
        # The constructor runs on the replica's event loop; resuming reads the store, so it goes to a thread.
        self._resumed = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        try:
            if found := await asyncio.to_thread(self._jobs.resume):
                log.info("resumed %d unfinished video job(s) from %s", found, self._jobs.store.uri)
        except Exception:  # noqa: BLE001 - polling resumes each job too; a bad store must not stop the replica
            log.exception("could not resume the video jobs of %s", self._jobs.store.uri)

    async def _in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking job-store call, in a thread: 404 for an unknown job, 503 while the store cannot be reached."""
        try:
            return await asyncio.to_thread(fn, *args)
        except JobNotFound as e:
            raise HTTPException(404, str(e)) from None
        except OSError as e:
            retry = str(max(1, round(self._args.retry_after_s)))
            raise HTTPException(503, f"the video job store is unavailable ({type(e).__name__}); retry later",
                                headers={"Retry-After": retry}) from None

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

    @app.get("/healthz", response_model=Health, responses={503: {"model": ErrorOut}})
    async def healthz(self) -> Health:
        """200 when a model replica answers with a loaded model."""
        info = await self._call("info")
        return Health(status="ok", model=info.get("source"))

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
        rate = fps or self._args.video_fps
        if info.duration_s <= self._args.inline_video_max_s:
            try:
                result = await self._call("analyze_video", data, suffix, rate)
            except ValueError as e:  # VideoError or an invalid setting, raised by the pipeline in the replica
                raise HTTPException(422, f"cannot analyse {file.filename!r}: {e}") from None
            at = now()
            job = VideoJob(job_id=uuid.uuid4().hex, status="done", duration_s=info.duration_s, created_at=at,
                           updated_at=at, attempts=1, result=result)
            return JSONResponse(job.model_dump(mode="json"), 200)
        # The job runs the model the deployment serves now, pinned to its version, with the deployment's settings.
        model_uri = pinned_model_uri(await self._call("info"))
        record = JobRecord(job_id=uuid.uuid4().hex, status="pending", duration_s=info.duration_s, created_at=now(),
                           suffix=suffix, fps=rate, model_uri=model_uri)
        await self._in_store(self._jobs.submit, record, data)
        return JSONResponse(record.public().model_dump(mode="json"), 202)

    @app.get(VIDEO_PATH + "/{job_id}", response_model=VideoJob, responses=NOT_FOUND)
    async def video_job(self, job_id: str) -> VideoJob:
        """Poll a video job started by POST /v1/videos (from any ingress replica, and across restarts)."""
        return (await self._in_store(self._jobs.poll, job_id)).public()

    @app.get(VIDEO_PATH + "/{job_id}/report", response_class=HTMLResponse, responses=NOT_FOUND)
    async def video_report(self, job_id: str) -> HTMLResponse:
        """The HTML report of a done video job (404 until it is done)."""
        return HTMLResponse(await self._in_store(self._jobs.report, job_id))

    # -- live classrooms (serve/streams.py) --------------------------------------------------------------------------

    def _stream_out(self, record: StreamRecord, state: dict | None) -> StreamState:
        base = f"{STREAM_PATH}/{record.stream_id}"
        return StreamState(**record.public().model_dump(), page=f"{base}/page", events=f"{base}/events", state=state)

    @app.post(STREAM_PATH, response_model=StreamState, status_code=201, responses=ERRORS)
    async def start_stream(self, body: StreamIn) -> StreamState:
        """Start analysing a classroom camera: one stream actor, its faces through the shared model deployment."""
        running = [r for r in await self._in_store(self._streams.list) if r.status not in ENDED]
        if len(running) >= self._args.max_streams:
            raise HTTPException(429, f"{len(running)} streams are running, the limit (max_streams); stop one first")
        try:
            record = await self._in_store(self._streams.start, body.url, body.name, body.fps or self._args.video_fps)
        except StreamNotStarted as e:
            raise HTTPException(422, f"cannot start the stream: {e}") from None
        return self._stream_out(record, None)

    @app.get(STREAM_PATH, response_model=list[StreamOut])
    async def list_streams(self) -> list[StreamOut]:
        """Every stream the store holds, running or ended (with its report)."""
        return [r.public() for r in await self._in_store(self._streams.list)]

    @app.get(STREAM_PATH + "/{stream_id}", response_model=StreamState, responses=NOT_FOUND)
    async def stream_state(self, stream_id: str) -> StreamState:
        """The stream and its newest state: people, classroom measures, alerts and the stream's health."""
        return self._stream_out(*await self._in_store(self._streams.get, stream_id))

    @app.get(STREAM_PATH + "/{stream_id}/events", responses=NOT_FOUND)
    async def stream_events(self, stream_id: str) -> StreamingResponse:
        """Server-Sent Events: one `data:` line of JSON per new state (the live page reads this)."""
        await self._in_store(self._streams.store.read, stream_id)

        async def events() -> AsyncIterator[bytes]:
            seen, quiet = None, 0.0
            while True:
                record, state = await self._in_store(self._streams.get, stream_id)
                if state is not None and state.get("time") != seen:
                    seen, quiet = state.get("time"), 0.0
                    yield b"data: " + json.dumps(state, default=float).encode() + b"\n\n"
                elif (quiet := quiet + 1.0) >= 15.0:
                    quiet = 0.0
                    yield b": heartbeat\n\n"
                if record.status in ENDED:
                    return
                await asyncio.sleep(1.0)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get(STREAM_PATH + "/{stream_id}/page", response_class=HTMLResponse, responses=NOT_FOUND)
    async def stream_page(self, stream_id: str) -> HTMLResponse:
        """The teacher's live page of this classroom (the page of `classemo live`)."""
        record = await self._in_store(self._streams.store.read, stream_id)
        return HTMLResponse(live_page_html(record.name))

    @app.get(STREAM_PATH + "/{stream_id}/report", response_class=HTMLResponse, responses=NOT_FOUND)
    async def stream_report(self, stream_id: str) -> HTMLResponse:
        """The lesson's HTML report, once the stream has ended or been stopped."""
        return HTMLResponse(await self._in_store(self._streams.report, stream_id))

    @app.delete(STREAM_PATH + "/{stream_id}", response_model=StreamOut, responses=NOT_FOUND)
    async def stop_stream(self, stream_id: str) -> StreamOut:
        """Stop a stream and write its report (GET .../report); the record stays listed."""
        return (await self._in_store(self._streams.stop, stream_id)).public()

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
