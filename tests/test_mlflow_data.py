"""Datasets as MLflow inputs (source, digest, context, profile) and the model-training experiment kind, against a
real sqlite tracking store; the same on a real S3 endpoint on loopback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from classemo.data.dataset import inspect_dataset, split_digest, split_id
from classemo.mlflow_data import log_data_inputs
from classemo.synth.clips import write_synth_dataset
from classemo.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, use_experiment


def _write(root: Path | str, seed: int = 0) -> None:
    write_synth_dataset(str(root), clips_per_class=3, num_frames=2, image_size=24, seed=seed, subjects=9)


def _inputs(client: MlflowClient, run_id: str) -> dict[str, dict]:
    """context -> {name, digest, source, source_type, profile} of a run's dataset inputs."""
    out = {}
    for di in client.get_run(run_id).inputs.dataset_inputs:
        context = {t.key: t.value for t in di.tags}["mlflow.data.context"]
        d = di.dataset
        out[context] = dict(name=d.name, digest=d.digest, source=json.loads(d.source), source_type=d.source_type,
                            profile=json.loads(d.profile))
    return out


def test_each_split_is_an_input_with_its_source_digest_and_counts(tmp_path: Path, mlflow_uri: str) -> None:
    root = tmp_path / "lessons"
    _write(root)
    info = inspect_dataset(str(root))
    mlflow.set_tracking_uri(mlflow_uri)
    client = MlflowClient(mlflow_uri)
    use_experiment("kinds")
    with mlflow.start_run() as run:
        logged = log_data_inputs(run.info.run_id, info)
    assert [d.split for d in logged] == ["train", "val", "test"]
    got = _inputs(client, run.info.run_id)
    assert set(got) == {"train", "val", "test"}
    for split, d in got.items():
        assert d["name"] == "lessons" and d["source_type"] == "local" and d["source"] == {"uri": str(root)}
        assert d["digest"] == split_digest(info, split) and split_id(info, split).endswith(d["digest"])
        assert d["profile"]["num_clips"] == info.manifest.counts[split] > 0
        assert sum(d["profile"]["label_counts"].values()) == d["profile"]["num_clips"]
    assert len({d["digest"] for d in got.values()}) == 3

    # Only the splits asked for, and never an empty one.
    with mlflow.start_run() as run:
        assert [d.split for d in log_data_inputs(run.info.run_id, info, ("test",))] == ["test"]
    assert set(_inputs(client, run.info.run_id)) == {"test"}


def test_the_digest_follows_the_data(tmp_path: Path) -> None:
    a, same, other = tmp_path / "a", tmp_path / "same", tmp_path / "other"
    _write(a, seed=0)
    _write(same, seed=0)
    _write(other, seed=1)
    digest = {name: split_digest(inspect_dataset(str(p)), "train") for name, p in
              (("a", a), ("same", same), ("other", other))}
    assert digest["a"] == digest["same"]  # the same bytes in another folder: the same data
    assert digest["other"] != digest["a"]
    # One shard rewritten with a row fewer, the manifest left as it was: the shard sizes tell.
    shard = sorted((a / "train").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    pq.write_table(table.slice(0, table.num_rows - 1), shard)
    assert split_digest(inspect_dataset(str(a)), "train") != digest["a"]
    assert split_digest(inspect_dataset(str(a)), "test") == split_digest(inspect_dataset(str(same)), "test")


def test_experiments_are_marked_as_model_training_unless_they_say_otherwise(mlflow_uri: str) -> None:
    mlflow.set_tracking_uri(mlflow_uri)
    client = MlflowClient(mlflow_uri)
    exp = use_experiment("fresh")
    assert client.get_experiment(exp.experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    # An experiment made before (no kind) gets one; one a user marked keeps its own.
    old = client.create_experiment("old")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    use_experiment("old")
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    mine = client.create_experiment("mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    use_experiment("mine")
    assert client.get_experiment(mine).tags[EXPERIMENT_KIND_TAG] == "genai_development"


@pytest.mark.s3
def test_an_s3_dataset_is_an_s3_source(tmp_path: Path, s3_bucket: str, mlflow_uri: str) -> None:
    local = tmp_path / "ds"
    _write(local)
    root = f"s3://{s3_bucket}/ds"
    import boto3

    s3 = boto3.client("s3")
    for f in local.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), s3_bucket, f"ds/{f.relative_to(local).as_posix()}")
    info = inspect_dataset(root)
    assert split_digest(info, "val") == split_digest(inspect_dataset(str(local)), "val")  # same data, same digest
    mlflow.set_tracking_uri(mlflow_uri)
    use_experiment("s3")
    with mlflow.start_run() as run:
        log_data_inputs(run.info.run_id, info, ("train",))
    got = _inputs(MlflowClient(mlflow_uri), run.info.run_id)["train"]
    assert got["source_type"] == "s3" and got["source"] == {"uri": root} and got["name"] == "ds"
    shutil.rmtree(local)
