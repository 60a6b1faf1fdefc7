"""jobs/analyze.py on two Ray nodes (ray.cluster_utils.Cluster) with the lessons in a real S3 endpoint on loopback
(moto server): 4 synthetic lessons, a corrupt file and a video without faces; a driver killed after the first lesson
and a rerun that finishes only the rest; outputs equal to `classemo analyze` on the same videos."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import MEDIA

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.slow]

LESSONS = {"mon/maths": ("lively", 2, 1), "mon/art": ("dull", 3, 2), "tue/physics": ("difficult", 2, 3),
           "tue/history": ("lively", 3, 4)}  # name -> scenario, students, seed
BAD = {"tue/broken": "cannot be opened as a video", "wed/empty_room": "no face found in"}


@pytest.fixture(scope="module")
def two_nodes(s3_endpoint):
    """Head + 1 worker node, 2 CPUs each, all on 127.0.0.1; started after the S3 env is set, so every node's
    processes see it (as in test_multinode_s3.py)."""
    import ray
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    from helpers import free_port

    def ports() -> dict:
        return {"dashboard_agent_listen_port": free_port(), "metrics_export_port": free_port()}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # keep ray.init on loopback (see test_multinode_s3)
        mp.setenv(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1",
                                                                "include_dashboard": False, **ports()})
        cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1", **ports())
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
        cluster.wait_for_nodes()
        yield cluster
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def no_bf16():
    """`dtype="auto"` picks bf16 on this CPU only if a timing says it is faster; pretend the CPU has no bf16, so the
    job and `classemo analyze` both run float32 and their outputs can be compared bit for bit."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("classemo.precision.cpu_supports_bf16", lambda *a, **k: False)
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained classemo_tiny checkpoint (as in tests/video/conftest.py): the path does not care what it
    learned."""
    import torch

    from classemo.checkpoint import save_model_checkpoint
    from classemo.faces import FaceSettings
    from classemo.labels import LabelSet
    from classemo.models import create_model

    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7)
    ckpt = tmp_path_factory.mktemp("ckpt")
    save_model_checkpoint(model, ckpt, labels=LabelSet.paper(), face=FaceSettings(size=model.image_size))
    return ckpt


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 6 videos on a local disk, laid out as in the bucket."""
    from classemo.synth.classroom import make_classroom_video

    root = tmp_path_factory.mktemp("videos")
    for name, (scenario, students, seed) in LESSONS.items():
        make_classroom_video(root / f"{name}.mp4", scenario=scenario, num_students=students, seconds=2.4, fps=5,
                             seed=seed, size=(640, 360))  # faces of 28 px and up: large enough to read
    (root / "tue/broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "wed").mkdir()
    (root / "wed/empty_room.mp4").write_bytes((MEDIA / "no_face.mp4").read_bytes())
    return root


@pytest.fixture(scope="module")
def runs(two_nodes, no_bf16, checkpoint: Path, videos: Path, s3_endpoint: str) -> dict:
    """Upload the videos; run the job with an injected driver failure after the first lesson, then again."""
    import uuid

    import boto3

    from jobs.analyze import CRASH_ENV, main

    bucket = f"lessons-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    for f in videos.rglob("*.mp4"):
        s3.upload_file(str(f), bucket, f"in/{f.relative_to(videos).as_posix()}")
    src, dst = f"s3://{bucket}/in/", f"s3://{bucket}/out"
    argv = [src, "--model", str(checkpoint), "--out", dst, "--actors", "1", "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CRASH_ENV, "1")
        with pytest.raises(RuntimeError, match="injected driver failure"):
            main(argv)
    markers = {k["Key"]: json.loads(s3.get_object(Bucket=bucket, Key=k["Key"])["Body"].read())
               for k in s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])
               if k["Key"].endswith("/_SUCCESS")}
    from jobs.analyze import Job, parse_args, run

    out = run(Job(parse_args(argv)))
    return {"s3": s3, "bucket": bucket, "first": markers, "second": out}


def _get(runs: dict, key: str) -> bytes:
    return runs["s3"].get_object(Bucket=runs["bucket"], Key=f"out/{key}")["Body"].read()


def test_a_killed_job_rerun_finishes_only_the_rest(runs: dict) -> None:
    first = {k.removeprefix("out/").removesuffix("/_SUCCESS"): v for k, v in runs["first"].items()}
    assert len(first) == 1 and set(first) < set(LESSONS)  # killed right after its first lesson was written
    second = runs["second"]
    assert second["skipped"] == sorted(first) and sorted(second["analysed"]) == sorted(set(LESSONS) - set(first))
    for name, marker in first.items():  # the finished lesson was not redone
        assert json.loads(_get(runs, f"{name}/_SUCCESS"))["finished"] == marker["finished"]


def test_reports_rejections_and_the_cross_lesson_summary_are_in_s3(runs: dict) -> None:
    keys = {k["Key"].removeprefix("out/") for k in runs["s3"].list_objects_v2(Bucket=runs["bucket"],
                                                                              Prefix="out/")["Contents"]}
    assert keys == {f"{n}/{f}" for n in LESSONS for f in ("timeline.parquet", "summary.json", "report.html",
                                                          "_SUCCESS")} | {"rejected.csv", "lessons.parquet",
                                                                          "overview.html"}
    rejected = pd.read_csv(io.BytesIO(_get(runs, "rejected.csv")))
    assert len(rejected) == 2 == len(runs["second"]["rejected"])
    for name, reason in BAD.items():
        row = rejected[rejected["video"] == f"s3://{runs['bucket']}/in/{name}.mp4"]
        assert len(row) == 1 and reason in row["reason"].iloc[0], rejected
    table = pd.read_parquet(io.BytesIO(_get(runs, "lessons.parquet")))
    assert sorted(table["lesson"].unique()) == sorted(LESSONS) and len(table) == runs["second"]["lessons"]
    assert table["classroom_activity"].between(0, 1).all() and table["effectiveness"].between(0, 1).all()
    page = _get(runs, "overview.html").decode()
    assert all(f'href="{n}/report.html"' in page for n in LESSONS) and page.count("<svg") == len(LESSONS)
    assert "broken.mp4" in page and "empty_room.mp4" in page


def test_each_report_equals_classemo_analyze(runs: dict, no_bf16, videos: Path, checkpoint: Path,
                                            tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from classemo.cli import app

    for name in LESSONS:
        out = tmp_path / name
        result = CliRunner().invoke(app, ["analyze", str(videos / f"{name}.mp4"), "--model", str(checkpoint),
                                          "--out", str(out), "--no-progress"])
        assert result.exit_code == 0, result.output
        job_tl = pd.read_parquet(io.BytesIO(_get(runs, f"{name}/timeline.parquet")))
        cli_tl = pd.read_parquet(out / "timeline.parquet")
        # The head pose's landmark net runs with the Ray task's one thread against the CLI's two, so its angles
        # agree to float rounding (about 1e-5 degrees), not to the bit; everything else is bit for bit.
        pose = ["yaw", "pitch", "roll"]
        pd.testing.assert_frame_equal(job_tl[pose], cli_tl[pose], check_exact=False, atol=1e-3, rtol=0)
        pd.testing.assert_frame_equal(job_tl.drop(columns=pose), cli_tl.drop(columns=pose), check_exact=True)
        job, cli = json.loads(_get(runs, f"{name}/summary.json")), json.loads((out / "summary.json").read_text())
        assert job["video"].pop("path") == f"s3://{runs['bucket']}/in/{name}.mp4"
        cli["video"].pop("path")
        job.pop("timings_s")
        cli.pop("timings_s")
        assert job == cli
        assert _get(runs, f"{name}/report.html").decode() == (out / "report.html").read_text()


def test_bad_source_model_or_option_is_one_line_and_exit_2(tmp_path: Path, checkpoint: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from jobs.analyze import main

    (tmp_path / "list.txt").write_text("# nothing\n")
    cases = [([str(tmp_path / "nope"), "--model", str(checkpoint)], "no such folder, S3 prefix, video or list file"),
             ([str(tmp_path / "list.txt"), "--model", str(checkpoint)], "names no video"),
             ([str(MEDIA), "--model", str(tmp_path / "no-model")], "does not exist"),
             ([str(MEDIA), "--model", str(checkpoint), "--segment-s", "0"], "segment length"),
             ([str(MEDIA), "--model", str(checkpoint), "--teacher", "front"], "teacher must be")]
    for argv, message in cases:
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("classemo batch analyze: error: ") and message in err and err.count("\n") == 1, err
