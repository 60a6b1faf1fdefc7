"""Shared fixtures: a real S3 endpoint on loopback (moto server), local MLflow, and a per-module Ray cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import REPO, free_port

# Nothing in the tests talks to anything but 127.0.0.1.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

# jobs/, tune/ and serve/ are Ray entry points run from the working directory, not an installed package.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 endpoint on loopback: moto's ThreadedMotoServer. Yields the endpoint URL and sets AWS_* env."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                            "AWS_DEFAULT_REGION", "AWS_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL=url,
                      AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    yield url
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture()
def s3_bucket(s3_endpoint):
    """A fresh bucket on the loopback S3 endpoint; yields its name."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A private sqlite tracking store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray per test module (starting one costs seconds). 4 logical CPUs on 2 cores, so that
    fractional-CPU trainers and Ray Data both get slots."""
    import ray

    from jobs.train import local_system_config

    ray.init(address="local", num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False, _system_config=local_system_config(4))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 classes x 6 clips of 4 frames at 32 px, split by subject (train/val/test all non-empty)."""
    from classemo.synth.clips import write_synth_dataset

    root = tmp_path_factory.mktemp("data") / "tiny"
    manifest = write_synth_dataset(str(root), clips_per_class=6, num_frames=4, image_size=32, seed=0, subjects=12)
    assert all(manifest.counts[s] > 0 for s in ("train", "val", "test")), manifest.counts
    return root
