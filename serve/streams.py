"""Live classrooms on a cluster: one detached stream actor per classroom, every classroom's faces through the one model.

Store layout, one folder per stream (a local folder or S3, as the video jobs: `streams_uri`)::

    <streams_uri>/<stream_id>/stream.json       StreamRecord: url, name, status, times, restarts, error
    <streams_uri>/<stream_id>/checkpoint.pkl    LiveCheckpoint: rows, tracks, alerts and gaps analysed so far
    <streams_uri>/<stream_id>/state.json        the newest state the page showed, as of the last checkpoint
    <streams_uri>/<stream_id>/report.html       with summary.json and timeline.parquet, once the stream ended

A `StreamActor` (detached, so an ingress restart leaves it running; restarted by Ray when its process dies) runs
`classemo.live.run_live`: the stream is read, faces are found, tracked and cropped in the actor, and the crops and
the finished windows go to the `ClassEmoModel` deployment (`embed`, `predict_windows`), which batches them with every
other classroom's and autoscales as for any request. A restarted actor reads the checkpoint and goes on: the page keeps
its people, sparklines and alerts, the lost seconds are a gap, and the report covers the whole lesson.
"""

from __future__ import annotations

import json
import logging
import pickle
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import ray

from serve.jobs import JobNotFound, JobStore, now
from serve.schemas import ServeArgs, StreamOut

log = logging.getLogger("ray.serve")

STREAM_NAMESPACE = "classemo-streams"
MAX_RESTARTS = 5  # a stream whose process keeps dying is failed rather than restarted forever
REPORT_FILES = ("report.html", "summary.json", "timeline.parquet")
ENDED = ("ended", "stopped", "failed")


def actor_name(stream_id: str) -> str:
    return f"classemo-stream-{stream_id}"


class StreamRecord(StreamOut):
    """stream.json: the public `StreamOut` plus what the actor needs to (re)start."""

    fps: float

    def public(self) -> StreamOut:
        """The client's view: the URL without credentials."""
        out = StreamOut.model_validate(self.model_dump(include=set(StreamOut.model_fields)))
        out.url = redact_url(out.url)
        return out


def redact_url(url: str) -> str:
    """`rtsp://user:secret@host/x` -> `rtsp://***@host/x`: camera passwords stay on the server."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


class StreamStore(JobStore):
    """Stream folders, in the job store's way (fsspec; whole-file writes only)."""

    kind = "stream"

    def write(self, record: StreamRecord) -> None:  # type: ignore[override]
        record.updated_at = now()
        self.put(record.stream_id, "stream.json", record.model_dump_json().encode())

    def read(self, stream_id: str) -> StreamRecord:  # type: ignore[override]
        data = self.get(stream_id, "stream.json")
        if data is None:
            raise JobNotFound(f"no stream {stream_id!r}")
        return StreamRecord.model_validate_json(data)

    def put(self, stream_id: str, name: str, data: bytes) -> None:
        self._put(self._path(stream_id, name), data)

    def get(self, stream_id: str, name: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(stream_id, name))
        except FileNotFoundError:
            return None


class DeploymentPredictor:
    """The part of `classemo.predictor.Predictor` that `run_live` uses, answered by the model deployment: the face
    path is built here from the model's face settings; the forward passes go to the deployment, batched there."""

    def __init__(self, handle: Any) -> None:
        from classemo.faces import FacePath, FaceSettings

        self._handle = handle
        spec = handle.stream_spec.remote().result()
        self.label_set = spec["label_set"]
        self.labels = list(self.label_set.names)
        self.num_frames, self.embed_dim = spec["num_frames"], spec["embed_dim"]
        self.dtype, self.info = spec["dtype"], spec["info"]
        self._face_path = FacePath(FaceSettings.from_dict(spec["face"]))

    def face_path(self) -> Any:
        return self._face_path

    def embed_frames(self, crops: list[np.ndarray]) -> np.ndarray:
        return self._handle.embed.remote(list(crops)).result()

    def predict_features(self, seqs: list[np.ndarray]) -> list[Any]:
        return self._handle.predict_windows.remote(list(seqs)).result()

    @property
    def model(self) -> Any:  # embed_chunks reads model.embed_dim for a chunk without faces
        return self


@ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, max_concurrency=8)
class StreamActor:
    """Analyses one classroom stream until it ends or is stopped; answers its state meanwhile."""

    def __init__(self, store_uri: str, stream_id: str, app_name: str, retries: int) -> None:
        from ray import serve

        from classemo.live.source import LiveSource, SourceError

        self._store, self._id = StreamStore(store_uri), stream_id
        self._state: dict | None = None
        self._stopping, self._done = threading.Event(), threading.Event()
        self.error: str | None = None
        record = self._store.read(stream_id)
        if record.status in ENDED:  # restarted after the end: answer the last state
            self._state = json.loads(self._store.get(stream_id, "state.json") or b"null")
            self._done.set()
            return
        resume = None
        if (blob := self._store.get(stream_id, "checkpoint.pkl")) is not None:
            resume = pickle.loads(blob).resumed(time.time())  # our own store's file, written by this class
            record.restarts = resume.restarts
            if record.restarts > MAX_RESTARTS:
                self._end(record, "failed", f"the stream's worker died {record.restarts} times")
                return
            log.warning("stream %s restarted (%d); resuming %.1f s in", stream_id, record.restarts, resume.offset_s)
        try:
            self._source = LiveSource(record.url, fps=record.fps, retries=retries)
            predictor = DeploymentPredictor(serve.get_deployment_handle("ClassEmoModel", app_name=app_name))
        except (SourceError, ValueError) as e:
            self.error = str(e)
            self._end(record, "failed", self.error)
            return
        record.status = "running"
        self._store.write(record)
        threading.Thread(target=self._run, args=(predictor, resume, record.name), daemon=True,
                         name=f"stream {stream_id}").start()

    def _end(self, record: StreamRecord, status: str, error: str | None) -> None:
        record.status, record.error = status, error
        self._store.write(record)
        self._done.set()

    def _checkpoint(self, checkpoint: Any) -> None:
        self._store.put(self._id, "checkpoint.pkl", pickle.dumps(checkpoint))
        if self._state is not None:
            self._store.put(self._id, "state.json", json.dumps(self._state, default=float).encode())

    def _run(self, predictor: DeploymentPredictor, resume: Any, title: str) -> None:
        from classemo.live.session import run_live

        status, error = "ended", None
        try:
            with tempfile.TemporaryDirectory(prefix="classemo-stream-") as tmp:
                run_live(self._source, predictor, out_dir=tmp, on_state=self._on_state, resume=resume,
                         on_checkpoint=self._checkpoint)
                for name in REPORT_FILES:
                    self._store.put(self._id, name, (Path(tmp) / name).read_bytes())
            status = "stopped" if self._stopping.is_set() else "ended"
            error = self._source.error
        except Exception as e:  # noqa: BLE001 - nobody awaits this thread; the record must say what went wrong
            log.exception("stream %s failed", self._id)
            status, error = "failed", f"{type(e).__name__}: {e}"
        record = self._store.read(self._id)
        if status != "failed":
            record.report = f"/v1/streams/{self._id}/report"
        self._end(record, status, error)

    def _on_state(self, snapshot: dict) -> None:
        self._state = snapshot

    def started(self) -> str | None:
        """Why the stream could not start (an unreachable or wrong URL), or None."""
        return self.error

    def state(self) -> dict | None:
        return self._state

    def stop(self, timeout_s: float) -> bool:
        """End the stream and wait (up to `timeout_s`) for its report; whether it finished."""
        self._stopping.set()
        if not self._done.is_set():
            self._source.stop()
        return self._done.wait(timeout_s)


class StreamNotStarted(ValueError):
    """The stream's source could not be opened: a 422 naming the URL."""


class Streams:
    """The ingress's side of the streams. Every method blocks (store and GCS calls): call them in a thread."""

    def __init__(self, args: ServeArgs, app_name: str) -> None:
        self.store = StreamStore(args.streams_uri)
        self._args, self._app = args, app_name

    def _actor(self, stream_id: str) -> Any:
        try:
            return ray.get_actor(actor_name(stream_id), namespace=STREAM_NAMESPACE)
        except ValueError:
            return None

    def start(self, url: str, name: str, fps: float) -> StreamRecord:
        """Start a stream actor; raises `StreamNotStarted` when its source does not open."""
        record = StreamRecord(stream_id=uuid.uuid4().hex, name=name, url=url, fps=fps, status="starting",
                              created_at=now())
        self.store.write(record)
        actor = StreamActor.options(  # type: ignore[attr-defined]
            name=actor_name(record.stream_id), namespace=STREAM_NAMESPACE, lifetime="detached",
            num_cpus=self._args.stream_num_cpus,
        ).remote(self.store.uri, record.stream_id, self._app, self._args.stream_retries)
        error = ray.get(actor.started.remote(), timeout=self._args.stream_open_timeout_s)
        if error is not None:
            ray.kill(actor, no_restart=True)
            self.store.remove(record.stream_id)
            raise StreamNotStarted(error)
        return self.store.read(record.stream_id)

    def list(self) -> list[StreamRecord]:
        return sorted(self.store.records(), key=lambda r: r.created_at or now())  # type: ignore[arg-type]

    def get(self, stream_id: str) -> tuple[StreamRecord, dict | None]:
        """The record and the newest state: the actor's, or the stored one while it restarts or after the end."""
        record = self.store.read(stream_id)
        actor = self._actor(stream_id)
        state = None
        if actor is not None:
            try:
                state = ray.get(actor.state.remote(), timeout=5.0)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                state = None
        if state is None:
            state = json.loads(self.store.get(stream_id, "state.json") or b"null")
        return record, state

    def stop(self, stream_id: str) -> StreamRecord:
        """Stop the stream, wait for its report, and let its actor go."""
        self.store.read(stream_id)  # 404 first
        actor = self._actor(stream_id)
        if actor is not None:
            try:
                ray.get(actor.stop.remote(self._args.stream_stop_timeout_s),
                        timeout=self._args.stream_stop_timeout_s + 10)
            finally:
                ray.kill(actor, no_restart=True)
        record = self.store.read(stream_id)
        if record.status not in ENDED:  # its actor was gone: nothing more will be analysed
            record.status, record.error = "stopped", record.error or "stopped while its worker was down"
            self.store.write(record)
        return record

    def report(self, stream_id: str) -> bytes:
        record = self.store.read(stream_id)
        data = self.store.get(stream_id, "report.html")
        if data is None:
            raise JobNotFound(f"stream {stream_id!r} has no report yet: it is {record.status}; DELETE "
                              f"/v1/streams/{stream_id} stops it and writes the report")
        return data
