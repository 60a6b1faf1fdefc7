"""Durable video jobs: a job store outside the ingress (a local folder or S3) and one detached Ray actor per job.

Store layout, one folder per job::

    <video_jobs_uri>/<job_id>/job.json          JobRecord: status, times, attempts, error, result
    <video_jobs_uri>/<job_id>/upload<suffix>    the uploaded video, deleted as soon as the job has ended
    <video_jobs_uri>/<job_id>/report.html       the analysis's HTML report, once done

job.json is always replaced whole (temp file + rename on disk, one PUT on S3), so a reader never sees half of it,
and it is written before the upload, so every job folder has one. The analysis runs in a detached actor
(`VideoJobRunner`, named after the job): Ray fate-shares a plain task with the worker that submitted it, but not a
detached actor, so an ingress restart leaves the run going. An unfinished job whose runner is gone (its worker
died, or the ingress died before handing it the job) is started again, when an ingress starts and when the job is
polled, up to `MAX_ATTEMPTS` runs. A finished job is removed `video_job_ttl_s` after it ended (checked when it is
polled and whenever a job is submitted), and at most `max_video_jobs` finished jobs are kept.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray

from serve.schemas import ServeArgs, VideoJob

log = logging.getLogger("ray.serve")  # in the ingress: its Serve replica log

JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: also what keeps a job id from naming a path outside its folder
RUNNER_NAMESPACE = "classemo-video-jobs"
MAX_ATTEMPTS = 3
FINISHED = ("done", "failed")


def now() -> datetime:
    """The current time, timezone-aware UTC (what job.json stores)."""
    return datetime.now(timezone.utc)


def runner_name(job_id: str) -> str:
    """Name of the job's detached runner actor (in `RUNNER_NAMESPACE`)."""
    return f"classemo-video-{job_id}"


def pinned_model_uri(info: dict[str, Any]) -> str:
    """The model a job runs: the served model's version when the registry named one (an alias may move while the
    job waits), else its source."""
    if info.get("registered_model") and info.get("version"):
        return f"models:/{info['registered_model']}/{info['version']}"
    return str(info["source"])


class JobNotFound(LookupError):
    """An unknown or expired job, or a report that is not there (yet): a 404 naming the job."""


class JobRecord(VideoJob):
    """job.json: the public `VideoJob` plus what a runner needs to (re)start the analysis."""

    suffix: str
    fps: float
    model_uri: str

    def public(self) -> VideoJob:
        """The client's view (no server-side settings)."""
        return VideoJob.model_validate(self.model_dump(include=set(VideoJob.model_fields)))

    def expired(self, ttl_s: float, at: datetime) -> bool:
        """Finished more than `ttl_s` ago; an unfinished job never expires (it ends, in at most MAX_ATTEMPTS)."""
        return self.status in FINISHED and (at - self.updated_at).total_seconds() > ttl_s


class JobStore:
    """Job folders under a local folder or an `s3://bucket/prefix`, through fsspec (s3fs; botocore takes the
    endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, e.g. MinIO)."""

    kind = "video job"  # what the folders hold, for error messages

    def __init__(self, uri: str) -> None:
        """Open the store (nothing is created until a job is written).

        Args:
            uri: A local folder (`~` expanded) or `s3://bucket/prefix`.
        """
        import fsspec

        self.uri = uri if uri.startswith("s3://") else os.path.abspath(os.path.expanduser(uri))
        # Listings are not cached: other ingress replicas and the runners write the same prefix.
        options = {"use_listings_cache": False} if self.uri.startswith("s3://") else {}
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **options)
        self.local = not self.uri.startswith("s3://")

    def _path(self, job_id: str, name: str) -> str:
        if not JOB_ID.fullmatch(job_id):
            raise JobNotFound(f"no {self.kind} {job_id!r} ({self.kind} ids are 32 hex digits)")
        return f"{self.root}/{job_id}/{name}"

    def _put(self, path: str, data: bytes) -> None:
        """Write a whole file that readers must never see half-written."""
        if not self.local:
            self.fs.pipe_file(path, data)  # one PUT: S3 shows the old object or the new one, nothing between
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)  # atomic on POSIX: a reader opens the old file or the new one

    def write(self, record: JobRecord) -> None:
        """Replace the job's job.json, stamping `updated_at`."""
        record.updated_at = now()
        self._put(self._path(record.job_id, "job.json"), record.model_dump_json().encode())

    def create(self, record: JobRecord, upload: bytes) -> None:
        """Write a new job: job.json first, so that a folder without one never exists, then the upload."""
        self.write(record)
        self._put(self._path(record.job_id, f"upload{record.suffix}"), upload)

    def read(self, job_id: str) -> JobRecord:
        """The job's job.json.

        Raises:
            JobNotFound: if there is no such job.
        """
        try:
            data = self.fs.cat_file(self._path(job_id, "job.json"))
        except FileNotFoundError:
            raise JobNotFound(f"no video job {job_id!r} (unknown, or removed after it expired)") from None
        return JobRecord.model_validate_json(data)

    def records(self) -> list[JobRecord]:
        """Every readable job of the store (folders that are not jobs are skipped)."""
        try:
            names = [Path(p).name for p in self.fs.ls(self.root, detail=False)]
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            try:
                found.append(self.read(name))
            except (JobNotFound, ValueError):  # not a job folder, or a job removed meanwhile
                continue
        return found

    def fetch_upload(self, record: JobRecord, folder: Path) -> Path:
        """The upload as a local file: in place on disk, downloaded into `folder` from S3.

        Raises:
            ValueError: if the upload is gone (the ingress died while storing it).
        """
        remote = self._path(record.job_id, f"upload{record.suffix}")
        local = Path(remote) if self.local else folder / f"upload{record.suffix}"
        try:
            if not self.local:
                self.fs.get_file(remote, str(local))
            elif not local.is_file():
                raise FileNotFoundError(remote)
        except FileNotFoundError:
            raise ValueError("the upload is gone (the server restarted while storing it); upload the video again") \
                from None
        return local

    def remove_upload(self, record: JobRecord) -> None:
        """Delete the upload of an ended job (it holds the classroom's faces; only the analysis is kept)."""
        try:
            self.fs.rm_file(self._path(record.job_id, f"upload{record.suffix}"))
        except FileNotFoundError:
            pass

    def put_report(self, job_id: str, html: bytes) -> None:
        """Store the job's report.html."""
        self._put(self._path(job_id, "report.html"), html)

    def report(self, job_id: str) -> bytes:
        """The job's report.html (call only for a done job)."""
        try:
            return self.fs.cat_file(self._path(job_id, "report.html"))
        except FileNotFoundError:
            raise JobNotFound(f"video job {job_id!r} is done but its report is missing") from None

    def remove(self, job_id: str) -> None:
        """Delete the job's folder."""
        try:
            self.fs.rm(f"{self.root}/{job_id}", recursive=True)
        except FileNotFoundError:
            pass

    def sweep(self, ttl_s: float, keep: int) -> list[JobRecord]:
        """Remove expired jobs, then the oldest finished ones past `keep`; return the jobs that remain."""
        at = now()
        jobs = sorted(self.records(), key=lambda r: r.updated_at)
        finished = [r for r in jobs if r.status in FINISHED]
        gone = {r.job_id for r in finished if r.expired(ttl_s, at)}
        live = [r for r in finished if r.job_id not in gone]
        gone |= {r.job_id for r in live[:max(0, len(live) - keep)]}
        for job_id in gone:
            self.remove(job_id)
        return [r for r in jobs if r.job_id not in gone]


@ray.remote(max_restarts=0, max_concurrency=2)  # a second run() (from a restarted ingress) must not queue
class VideoJobRunner:
    """Runs one job's analysis, records the outcome in the store, then exits. Detached: it outlives its ingress."""

    def __init__(self, store_uri: str, job_id: str, *, device: str | None, dtype: str,
                 torch_threads: int | None) -> None:
        """Keep the job's coordinates; the model is loaded by `run`, so a load error ends up in the job.

        Args:
            store_uri: `JobStore` URI.
            job_id: The job to run.
            device: Torch device (as the model deployment's).
            dtype: Predictor dtype (as the model deployment's).
            torch_threads: `torch.set_num_threads` for this actor.
        """
        self._store = JobStore(store_uri)
        self._job_id = job_id
        self._device, self._dtype, self._threads = device, dtype, torch_threads
        self._lock = threading.Lock()
        self._started = False

    def run(self) -> None:
        """Run the job once; a later call while it runs returns at once. The actor exits when the run ends."""
        with self._lock:
            if self._started:
                return
            self._started = True
        try:
            self._run()
        finally:
            ray.actor.exit_actor()

    def _run(self) -> None:
        import torch

        from classemo.predictor import Predictor
        from serve.model import analyze_upload

        record = self._store.read(self._job_id)
        if record.status in FINISHED:
            return
        record.status, record.attempts = "running", record.attempts + 1
        self._store.write(record)
        if self._threads:
            torch.set_num_threads(self._threads)
        try:
            with tempfile.TemporaryDirectory(prefix="classemo-video-job-") as tmp:
                upload = self._store.fetch_upload(record, Path(tmp))
                predictor = Predictor.from_checkpoint(record.model_uri, device=self._device, dtype=self._dtype)
                record.result, report = analyze_upload(predictor, upload, fps=record.fps, out_dir=Path(tmp) / "out")
                self._store.put_report(record.job_id, report.read_bytes())
            record.status, record.report = "done", f"/v1/videos/{record.job_id}/report"
        except ValueError as e:  # VideoError, CheckpointError, a lost upload: the client's to fix or retry
            record.status, record.error = "failed", f"cannot analyse the video: {e}"
        except Exception as e:  # noqa: BLE001 - nobody awaits this actor; the poller must learn what went wrong
            log.exception("video job %s failed", record.job_id)
            record.status, record.error = "failed", f"{type(e).__name__}: {e}"
        self._store.write(record)
        self._store.remove_upload(record)


class VideoJobs:
    """The ingress's side of the jobs: submit, poll (expiry, restarting a lost run), report, resume on start.

    Every method blocks (store I/O, GCS calls): the ingress calls them in a thread.
    """

    def __init__(self, args: ServeArgs) -> None:
        """Open the store named by `args.video_jobs_uri`.

        Args:
            args: The launch args (store, expiry, and the model deployment's device, dtype and resources, which
                each runner takes too).
        """
        self.store = JobStore(args.video_jobs_uri)
        self._args = args

    def _start(self, record: JobRecord, hand_over: bool) -> JobRecord:
        """Make sure an unfinished job has a runner: start one if there is none (or fail the job after
        MAX_ATTEMPTS runs), and with `hand_over` give a live one the job again (idempotent)."""
        name = runner_name(record.job_id)
        try:
            runner = ray.get_actor(name, namespace=RUNNER_NAMESPACE)
        except ValueError:
            record = self.store.read(record.job_id)  # a runner writes its outcome before it exits
            if record.status in FINISHED:
                return record
            if record.attempts >= MAX_ATTEMPTS:
                record.status, record.error = "failed", f"the analysis worker was lost {record.attempts} times"
                self.store.write(record)
                self.store.remove_upload(record)
                return record
            if record.attempts:
                log.warning("video job %s lost its runner after %d run(s); starting it again", record.job_id,
                            record.attempts)
            a = self._args
            runner = VideoJobRunner.options(
                name=name, namespace=RUNNER_NAMESPACE, lifetime="detached", get_if_exists=True,
                num_cpus=a.model_num_cpus, num_gpus=a.model_num_gpus,
            ).remote(self.store.uri, record.job_id, device=a.device, dtype=a.dtype, torch_threads=a.torch_threads)
            hand_over = True
        if hand_over:
            runner.run.remote()  # fire and forget: the outcome is read from the store
        return record

    def submit(self, record: JobRecord, upload: bytes) -> None:
        """Store a new job and start its runner (expired and surplus finished jobs are removed first)."""
        self.store.sweep(self._args.video_job_ttl_s, self._args.max_video_jobs)
        self.store.create(record, upload)
        self._start(record, hand_over=True)

    def poll(self, job_id: str) -> JobRecord:
        """The job's current state; an expired job is removed, an unfinished one without a runner restarted.

        Raises:
            JobNotFound: for an unknown or expired job.
        """
        record = self.store.read(job_id)
        if record.expired(self._args.video_job_ttl_s, now()):
            self.store.remove(job_id)
            raise JobNotFound(f"video job {job_id!r} expired: it ended at {record.updated_at:%Y-%m-%d %H:%M:%S} "
                              f"UTC, more than video_job_ttl_s={self._args.video_job_ttl_s:g} s ago")
        if record.status not in FINISHED:
            record = self._start(record, hand_over=False)
        return record

    def report(self, job_id: str) -> bytes:
        """The HTML report of a done job.

        Raises:
            JobNotFound: for an unknown or expired job, or one that is not done.
        """
        record = self.poll(job_id)
        if record.status != "done":
            reason = f"it failed: {record.error}" if record.status == "failed" else \
                f"it is {record.status}; poll GET /v1/videos/{job_id} until its status is done"
            raise JobNotFound(f"video job {job_id!r} has no report: {reason}")
        return self.store.report(job_id)

    def resume(self) -> int:
        """On ingress start: sweep the store and make sure every unfinished job has a runner holding it.

        Returns:
            How many unfinished jobs were found.
        """
        unfinished = [r for r in self.store.sweep(self._args.video_job_ttl_s, self._args.max_video_jobs)
                      if r.status not in FINISHED]
        for record in unfinished:
            self._start(record, hand_over=True)
        return len(unfinished)
