"""Pydantic schemas of the classemo Serve application: the launch args and the HTTP request/response bodies.

The same `ServeArgs` model validates `args:` in `serve/config.yaml` (Ray Serve's typed application builder), so
a typo in the config fails at `serve run` / `serve deploy` time, not on the first request.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEBUG_ENV = "CLASSEMO_SERVE_DEBUG"  # "1" turns the debug routes on without editing the config


class ServeArgs(BaseModel):
    """Launch arguments of the classemo application (the `args:` block of serve/config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str = Field("builtin", description="builtin (the model shipped with classemo), a checkpoint dir, or "
                                                  "an MLflow models:/ or runs:/ URI")
    device: str | None = Field(None, description="Torch device of the model replicas; CUDA when available")
    dtype: str = Field("auto", pattern="^(auto|float32|fp32|bf16|bfloat16)$",
                       description="Inference dtype: auto = bf16 where the CPU/GPU supports it, else float32")
    # Dynamic batching (a batch is a list of clips from any number of requests).
    max_batch_size: int = Field(16, ge=1, le=1024, description="Clips per forward pass (@serve.batch)")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10, description="How long a partial batch waits for more")
    # Replicas and load shedding of the model deployment.
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(4.0, gt=0, description="Autoscaling target per model replica")
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(30.0, gt=0, description="Window the autoscaler averages load over")
    max_ongoing_requests: int = Field(32, ge=1, description="In-flight clips per model replica (>= max_batch_size)")
    max_queued_requests: int = Field(256, ge=-1, description="Clips queued per caller before 503; -1 = unbounded")
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After seconds sent with a load-shedding 503")
    model_num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per model replica")
    model_num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per model replica")
    torch_threads: int | None = Field(None, ge=1, description="torch.set_num_threads in a model replica")
    health_check_period_s: float = Field(10.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    # Input limits: everything past them is a 4xx, never a replica crash.
    max_body_bytes: int = Field(32 * 2**20, ge=1024, description="Largest JSON body (413 above it)")
    max_video_bytes: int = Field(512 * 2**20, ge=1024, description="Largest video upload (413 above it)")
    max_clips_per_request: int = Field(32, ge=1)
    min_image_side: int = Field(8, ge=1, description="Smallest frame side in pixels")
    max_image_side: int = Field(4096, ge=16, description="Largest frame side in pixels")
    # Videos: short ones are answered inline, longer ones become a polled job.
    inline_video_max_s: float = Field(15.0, ge=0, description="Videos up to this long are analysed inline")
    video_fps: float = Field(5.0, gt=0, description="Analysis frame rate of uploaded videos")
    # Video jobs live in a store outside the ingress (upload, job.json, report.html per job): see serve/jobs.py.
    video_jobs_uri: str = Field("~/.cache/classemo/serve-jobs",
                                description="Job store: a local folder (every ingress replica must see the same "
                                            "one) or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL[_S3])")
    video_job_ttl_s: float = Field(86400.0, gt=0, description="A finished job is removed this long after it ended")
    max_video_jobs: int = Field(64, ge=1, description="Finished jobs kept at most; the oldest are removed first")
    # Live classrooms: one detached stream actor each (serve/streams.py), state in a store like the video jobs'.
    streams_uri: str = Field("~/.cache/classemo/serve-streams",
                             description="Stream store: a local folder every ingress replica and stream actor sees, or "
                                         "s3://bucket/prefix")
    max_streams: int = Field(32, ge=1, description="Streams running at once; a POST past it gets 429")
    stream_num_cpus: float = Field(0.25, ge=0, description="CPUs reserved per stream actor (decode, detect, track)")
    stream_retries: int = Field(5, ge=0, description="Reopen attempts of a dropped stream before it ends")
    stream_open_timeout_s: float = Field(30.0, gt=0, description="How long POST /v1/streams waits for the source")
    stream_stop_timeout_s: float = Field(60.0, gt=0, description="How long DELETE waits for the stream's report")
    # API keys: also CLASSEMO_API_KEYS (comma-separated) in the ingress's environment. None at all = open API.
    api_keys_file: str | None = Field(None, description="File of API keys, one per line, '#' starts a comment")
    debug_routes: bool = Field(False, description="Expose POST /debug/crash (tests only); or CLASSEMO_SERVE_DEBUG=1")

    @model_validator(mode="after")
    def _check(self) -> "ServeArgs":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas={self.max_replicas} is below min_replicas={self.min_replicas}")
        if self.max_image_side < self.min_image_side:
            raise ValueError(f"max_image_side={self.max_image_side} is below min_image_side={self.min_image_side}")
        for name in ("video_jobs_uri", "streams_uri"):
            uri = getattr(self, name)
            scheme = uri.split("://")[0] if "://" in uri else "file"
            if scheme not in ("file", "s3"):
                raise ValueError(f"{name} must be a local folder or s3://bucket/prefix, not {scheme}://")
        return self

    def debug_enabled(self) -> bool:
        """Whether the debug routes are on: `debug_routes`, or `CLASSEMO_SERVE_DEBUG=1` in this process's
        environment (each deployment asks in its own process)."""
        return self.debug_routes or os.environ.get(DEBUG_ENV) == "1"

    def model_user_config(self) -> dict[str, Any]:
        """The model deployment's user_config: what `reconfigure` can change without restarting replicas."""
        return {"model_uri": self.model_uri, "max_batch_size": self.max_batch_size,
                "batch_wait_timeout_s": self.batch_wait_timeout_s}


class ModelUserConfig(BaseModel):
    """The model deployment's user_config (changed live with `serve deploy` or `serve.run`)."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str
    max_batch_size: int = Field(16, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10)


class ClipIn(BaseModel):
    """One clip: its frames as base64 PNG/JPEG, in time order."""

    model_config = ConfigDict(extra="forbid")

    frames: list[str] = Field(..., description="Base64 PNG or JPEG images (face crops, or whole frames with "
                                               "detect_faces)")


class ClipsRequest(BaseModel):
    """Body of POST /v1/clips."""

    model_config = ConfigDict(extra="forbid")

    clips: list[ClipIn] = Field(..., description="One or more clips")
    detect_faces: bool = Field(False, description="Frames are whole images: crop the largest face of each first, "
                               "with the model's face path (its training data's detector, alignment and margin)")


class FaceBoxOut(BaseModel):
    """The face used from one frame (pixel coordinates of the uploaded image), with its head pose and whether its
    expression can be read; null when none was found."""

    x: int
    y: int
    w: int
    h: int
    yaw: float | None = Field(None, description="Head yaw in degrees (> 0 turned to the image's right); null: unknown")
    pitch: float | None = Field(None, description="Head pitch in degrees (< 0 looking down); null: unknown")
    roll: float | None = Field(None, description="Head roll in degrees; null: unknown")
    attention: str | None = Field(None, description="front, down, away or unknown")
    face_px: float | None = Field(None, description="Shorter side of the face box, in pixels")
    det_score: float | None = Field(None, description="The face detector's confidence")
    sharpness: float | None = Field(None, description="Variance of the Laplacian of the face at 64 px")
    readable: bool | None = Field(None, description="Whether the expression can be read (docs/analytics.md)")
    unread_reason: str | None = Field(None, description="Why not, when it cannot: too small, blurred, turned away...")


class ClipOut(BaseModel):
    """Predictions for one clip."""

    label: str = Field(..., description="Top class")
    probs: dict[str, float] = Field(..., description="Class probabilities of the clip")
    valence: float
    arousal: float
    frame_probs: list[list[float]] = Field(..., description="(T, C) per-frame class probabilities")
    frame_valence: list[float]
    frame_arousal: list[float]
    faces: list[FaceBoxOut | None] | None = Field(None, description="With detect_faces: the face used per frame")
    batch_size: int = Field(..., description="Clips in the model batch this clip was computed in")


class ClipsResponse(BaseModel):
    """Body returned by POST /v1/clips."""

    model: dict[str, Any] = Field(..., description="Source, name, version, alias and run id of the model used")
    predictions: list[ClipOut]


class ModelInfo(BaseModel):
    """Body returned by GET /v1/model."""

    source: str | None = None
    architecture: str | None = None
    registered_model: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    labels: list[str]
    preprocessing: dict[str, Any]
    num_frames: int
    device: str
    dtype: str | None = Field(None, description="spatial-stream compute dtype the replica runs (float32 or bfloat16)")
    dtype_calibration: dict[str, Any] | None = Field(
        None, description="for dtype=auto on a bf16-capable CPU: the load-time timing that chose it (ms per call)")


class BatchStats(BaseModel):
    """Body returned by GET /v1/stats: batch sizes seen by the model replica that answered."""

    replica: str
    batches: int
    clips: int
    max_batch_size_seen: int
    histogram: dict[int, int] = Field(..., description="batch size -> number of batches")
    max_batch_size: int
    batch_wait_timeout_s: float


class Health(BaseModel):
    """Body returned by GET /healthz."""

    status: Literal["ok"]
    model: str | None


class VideoJob(BaseModel):
    """A video analysis: inline result, or a job to poll at GET /v1/videos/{job_id}."""

    job_id: str
    status: Literal["pending", "running", "done", "failed"]
    duration_s: float
    created_at: datetime | None = Field(None, description="When the upload was accepted (UTC)")
    updated_at: datetime | None = Field(None, description="Last status change (UTC); expiry counts from here")
    attempts: int = Field(0, description="Analysis runs started; a run lost with its worker is started again")
    report: str | None = Field(None, description="Path of the HTML report (GET it) once the job is done")
    error: str | None = None
    result: dict[str, Any] | None = Field(None, description="summary, per-person tracks and timeline rows")


class ErrorOut(BaseModel):
    """Body of every 4xx/5xx this application raises itself."""

    detail: str


class StreamIn(BaseModel):
    """Body of POST /v1/streams: one classroom's camera."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., min_length=1, description="rtsp://, http(s):// (MJPEG or HLS) or another address OpenCV "
                                                    "opens; the server must reach it")
    name: str = Field("classroom", min_length=1, max_length=120, description="The classroom's name, on its page")
    fps: float | None = Field(None, gt=0, le=30, description="Analysis frame rate (default: the server's video_fps)")


class StreamOut(BaseModel):
    """One classroom stream."""

    stream_id: str
    name: str
    url: str = Field(..., description="The source, with any user:password in it replaced by ***")
    status: Literal["starting", "running", "ended", "stopped", "failed"]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    restarts: int = Field(0, description="Times its worker died and it resumed from its last checkpoint")
    error: str | None = None
    report: str | None = Field(None, description="Path of the HTML report once the stream has ended or been stopped")


class StreamState(StreamOut):
    """Body of GET /v1/streams/{id}: the stream and its newest state (the live page's data)."""

    page: str = Field(..., description="Path of the live page (open it in a browser)")
    events: str = Field(..., description="Path of the Server-Sent Events stream of states")
    state: dict[str, Any] | None = Field(None, description="people, classroom measures, alerts, health; null until "
                                                           "the first second is analysed")
