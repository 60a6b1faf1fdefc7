"""Durable video jobs: the job store on disk and on S3, and jobs that outlive their ingress replica and their runner.

The store tests need no Ray. The Serve tests run one local Ray and one application (module-scoped) over real HTTP on
127.0.0.1, with `inline_video_max_s` low so that a few-second video becomes a job.
"""

import json
import time
from datetime import timedelta
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from helpers import MEDIA

APP = "classemo"
REPO = Path(__file__).resolve().parents[2]
TTL_S = 3600.0
JOB_STATES = ("pending", "running", "done", "failed")


def _record(job_id: str, status: str = "pending", **kw):
    from serve.jobs import JobRecord, now

    return JobRecord(**{"job_id": job_id, "status": status, "duration_s": 3.0, "created_at": now(), "suffix": ".mp4",
                        "fps": 4.0, "model_uri": "ckpt", **kw})


def _video(path: Path, seconds: float, fps: int = 8, seed: int = 3) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 64))
    rng = np.random.default_rng(seed)
    for _ in range(int(seconds * fps)):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


# -- the store, without Ray ------------------------------------------------------------------------------------


def test_local_store_writes_whole_files_and_sweeps_by_age_and_count(tmp_path):
    from serve.jobs import JobNotFound, JobStore, now

    store = JobStore(str(tmp_path / "jobs"))
    assert store.records() == []  # the folder does not exist yet
    ids = [f"{i:032x}" for i in range(4)]
    for job_id in ids:
        store.create(_record(job_id), b"video bytes")
    folder = tmp_path / "jobs" / ids[0]
    assert sorted(p.name for p in folder.iterdir()) == ["job.json", "upload.mp4"]  # no temp file left behind
    assert json.loads((folder / "job.json").read_text())["status"] == "pending"
    assert store.fetch_upload(store.read(ids[0]), tmp_path).read_bytes() == b"video bytes"

    # ids[0] ended long ago, ids[1] and ids[2] recently (ids[1] first); ids[3] is still pending.
    for job_id in ids[:3]:
        record = store.read(job_id)
        record.status = "done"
        store.write(record)
        store.remove_upload(record)
    old = store.read(ids[0])
    old.updated_at = now() - timedelta(seconds=TTL_S + 1)
    store._put(store._path(ids[0], "job.json"), old.model_dump_json().encode())
    assert old.expired(TTL_S, now()) and not store.read(ids[1]).expired(TTL_S, now())
    left = store.sweep(TTL_S, keep=1)
    assert sorted(r.job_id for r in left) == [ids[2], ids[3]]  # expired, then the oldest past keep=1; pending stays
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == [ids[2], ids[3]]
    with pytest.raises(JobNotFound, match="unknown, or removed"):
        store.read(ids[0])
    with pytest.raises(ValueError, match="upload is gone"):
        store.fetch_upload(store.read(ids[2]), tmp_path)


@pytest.mark.parametrize("job_id", ["../etc", "nope", "A" * 32, "0" * 31 + "/"])
def test_store_refuses_ids_that_are_not_job_ids(tmp_path, job_id):
    from serve.jobs import JobNotFound, JobStore

    with pytest.raises(JobNotFound, match="32 hex digits"):
        JobStore(str(tmp_path)).read(job_id)


@pytest.mark.s3
def test_s3_store(s3_bucket, tmp_path):
    """The same store on a real S3 endpoint (moto on loopback, found through AWS_ENDPOINT_URL)."""
    from serve.jobs import JobStore

    store = JobStore(f"s3://{s3_bucket}/serve/jobs")
    assert store.records() == []
    job_id = "f" * 32
    store.create(_record(job_id), b"video bytes")
    assert store.fetch_upload(store.read(job_id), tmp_path).read_bytes() == b"video bytes"
    record = store.read(job_id)
    record.status = "done"
    store.write(record)
    store.put_report(job_id, b"<html>report</html>")
    store.remove_upload(record)
    assert store.report(job_id) == b"<html>report</html>"
    assert [r.status for r in store.records()] == ["done"]
    assert not store.fs.exists(store._path(job_id, "upload.mp4"))
    assert store.sweep(TTL_S, keep=0) == [] and store.records() == []


# -- Serve: jobs outlive the ingress and their runner ------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("video-jobs")


@pytest.fixture(scope="module")
def server(repo_on_path, ray_cluster, tmp_path_factory, jobs_dir) -> str:
    import torch
    from helpers import free_port
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from classemo.checkpoint import save_model_checkpoint
    from classemo.faces import FaceSettings
    from classemo.labels import LabelSet
    from classemo.models import create_model

    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7)
    ckpt = save_model_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "a", labels=LabelSet.paper(),
                                 face=FaceSettings(size=model.image_size))
    args = dict(model_uri=str(ckpt), min_replicas=1, max_replicas=1, torch_threads=1, model_num_cpus=1,
                health_check_period_s=1.0, health_check_timeout_s=5.0, inline_video_max_s=1.0, video_fps=4.0,
                dtype="float32", video_jobs_uri=str(jobs_dir), video_job_ttl_s=TTL_S)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    application = {"name": APP, "route_prefix": "/", "import_path": "serve.app:build_app", "args": args}
    _get_global_client().deploy_apps(ServeDeploySchema(applications=[application]), _blocking=True)
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def _submit(client: httpx.Client, data: bytes, name: str = "lecture.mp4") -> str:
    r = client.post("/v1/videos", files={"file": (name, data, "video/mp4")})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "pending" and job["created_at"] and job["result"] is None
    return job["job_id"]


def _wait(read, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = read(job_id)
        if job and job["status"] in ("done", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end in {timeout:.0f} s: {job}")


def _poll(client: httpx.Client):
    def read(job_id: str) -> dict | None:
        r = client.get(f"/v1/videos/{job_id}")
        return r.json() if r.status_code == 200 else None  # 5xx while the ingress is replaced

    return read


def _from_store(jobs_dir: Path):
    """Read job.json directly, so that no poll (which also restarts a lost run) touches the job."""
    def read(job_id: str) -> dict:
        return json.loads((jobs_dir / job_id / "job.json").read_text())

    return read


def _kill_runner(job_id: str) -> None:
    import ray

    from serve.jobs import RUNNER_NAMESPACE, runner_name

    ray.kill(ray.get_actor(runner_name(job_id), namespace=RUNNER_NAMESPACE), no_restart=True)
    _wait_runner_gone(job_id)


def _wait_runner_gone(job_id: str) -> None:
    import ray

    from serve.jobs import RUNNER_NAMESPACE, runner_name

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(runner_name(job_id), namespace=RUNNER_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the runner of job {job_id} is still alive")


def _gateway_replicas() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{APP}#APIGateway#")}


def _restart_ingress(client: httpx.Client) -> None:
    """Kill the APIGateway replica actor and wait until Serve has a new one answering."""
    import ray

    (old,) = _gateway_replicas()
    ray.kill(ray.get_actor(old, namespace="serve"), no_restart=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if _gateway_replicas() - {old}:
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise AssertionError("Serve did not replace the killed ingress replica")


@pytest.mark.serve
@pytest.mark.ray
def test_jobs_survive_an_ingress_restart_and_a_lost_runner(client, jobs_dir, tmp_path):
    """Two jobs: the ingress dies while both are unfinished, and job B's runner dies too. The new ingress resumes B
    on its own (nobody polls it through HTTP until it is done); A's runner simply finishes."""
    job_a = _submit(client, _video(tmp_path / "a.mp4", 2.0, seed=1))
    job_b = _submit(client, _video(tmp_path / "b.mp4", 2.0, seed=2))
    _kill_runner(job_b)
    assert _from_store(jobs_dir)(job_b)["status"] in ("pending", "running")  # killed before it could finish
    _restart_ingress(client)

    b = _wait(_from_store(jobs_dir), job_b)  # resumed by the new ingress at start
    assert b["status"] == "done", b
    for job_id in (job_a, job_b):
        job = _wait(_poll(client), job_id)  # from the new replica
        assert job["status"] == "done" and job["error"] is None, job
        assert job["result"]["summary"]["video"]["decoded_frames"] >= 8
        assert job["result"]["summary"]["video"]["path"] == "upload.mp4"
        assert job["report"] == f"/v1/videos/{job_id}/report"
        assert not (jobs_dir / job_id / "upload.mp4").exists()  # the video is deleted once analysed
        assert "suffix" not in job and "model_uri" not in job  # server-side fields stay in job.json


@pytest.mark.serve
@pytest.mark.ray
def test_a_lost_runner_is_restarted_when_polled(client, tmp_path):
    job_id = _submit(client, _video(tmp_path / "c.mp4", 2.0, seed=4))
    _kill_runner(job_id)
    job = _wait(_poll(client), job_id)
    assert job["status"] == "done", job
    assert job["attempts"] >= 1


@pytest.mark.serve
@pytest.mark.ray
def test_report_downloads_as_html_and_an_expired_job_404s(client, jobs_dir):
    from serve.jobs import JobRecord, now

    job_id = _submit(client, (MEDIA / "single_face.mp4").read_bytes(), "face.mp4")
    r = client.get(f"/v1/videos/{job_id}/report")
    assert r.status_code == 404 and job_id in r.text and "until its status is done" in r.text
    job = _wait(_poll(client), job_id)
    assert job["status"] == "done", job
    assert job["result"]["summary"]["tracks"], job["result"]["summary"]  # the face was tracked
    _wait_runner_gone(job_id)  # the runner exits once the job has ended, giving its CPUs back
    r = client.get(job["report"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<!DOCTYPE html>") and "Classroom emotion report: upload.mp4" in r.text
    assert "Table 3" in r.text

    # Age the job past video_job_ttl_s: the next poll removes it and says why; then it is simply unknown.
    path = jobs_dir / job_id / "job.json"
    record = JobRecord.model_validate_json(path.read_text())
    record.updated_at = now() - timedelta(seconds=TTL_S + 5)
    path.write_text(record.model_dump_json())
    r = client.get(f"/v1/videos/{job_id}")
    assert r.status_code == 404 and "expired" in r.text and job_id in r.text, r.text
    assert not (jobs_dir / job_id).exists()
    r = client.get(f"/v1/videos/{job_id}/report")
    assert r.status_code == 404 and "unknown, or removed after it expired" in r.text


@pytest.mark.serve
@pytest.mark.ray
def test_unknown_job_and_short_video_unchanged(client, tmp_path):
    r = client.get(f"/v1/videos/{'0' * 32}")
    assert r.status_code == 404 and "0" * 32 in r.text
    r = client.post("/v1/videos", files={"file": ("short.mp4", _video(tmp_path / "s.mp4", 0.5), "video/mp4")})
    assert r.status_code == 200 and r.json()["status"] == "done" and r.json()["result"]["timeline"] is not None


@pytest.mark.serve
@pytest.mark.ray
def test_an_open_api_is_logged_as_a_warning(client):
    """This app has no API keys (like the default local config): the ingress says so in its log at start."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    assert any(b"NO API KEYS: the classemo API is unauthenticated" in p.read_bytes() for p in logs.rglob("*.log")
               if p.is_file())


@pytest.mark.serve
@pytest.mark.ray
def test_failures_end_in_failed_with_the_reason(client, jobs_dir, tmp_path):
    """Jobs written straight into the store (as a crashed ingress leaves them): one whose model cannot be loaded,
    one that already lost its runner MAX_ATTEMPTS times. Polling starts or fails them; each ends with its reason."""
    from serve.jobs import MAX_ATTEMPTS, JobStore

    store = JobStore(str(jobs_dir))
    bad_model, worn_out = "a" * 32, "b" * 32
    store.create(_record(bad_model, model_uri=str(tmp_path / "no-such-checkpoint")), _video(tmp_path / "d.mp4", 2.0))
    store.create(_record(worn_out, attempts=MAX_ATTEMPTS), b"video bytes")
    job = _wait(_poll(client), bad_model)
    assert job["status"] == "failed" and "cannot analyse the video" in job["error"], job
    assert "no-such-checkpoint" in job["error"] and job["attempts"] == 1
    job = _poll(client)(worn_out)
    assert job["status"] == "failed" and job["error"] == f"the analysis worker was lost {MAX_ATTEMPTS} times"
    for job_id in (bad_model, worn_out):
        assert not (jobs_dir / job_id / "upload.mp4").exists()
        r = client.get(f"/v1/videos/{job_id}/report")
        assert r.status_code == 404 and "it failed" in r.text
