"""A real 3-trial search on a local Ray: Optuna TPE + ASHA over the training driver, MLflow runs, registration,
interrupted (SIGINT) after its first trial and resumed without running that trial again.

One search covers both: each trial is a Ray Train run of its own (~45 s here), and a second search only to be
interrupted cost the suite 160 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import REPO, TINY_SEARCH, free_port
from tune.config import load_tune_config
from tune.report import SEARCH_TAG
from tune.search import PROGRESS_FILE, run_search

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_with_state_api():
    """`ray_cluster` (4 logical CPUs) plus the dashboard, which serves Ray's state API, at an address pinned for
    every worker: like `jobs.train.init_ray(state_api=True)`, so that Ray Train frees the CPUs of a stopped trial."""
    import ray

    port = free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
             _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}})
    yield ray
    ray.shutdown()


def _live_placement_groups(ray) -> list[str]:
    return [pg_id for pg_id, pg in ray.util.placement_group_table().items() if pg["state"] != "REMOVED"]


def test_three_trial_search_interrupted_resumed_asha_mlflow_and_registry(request, mlflow_uri: str,
                                                                         tiny_dataset: Path, tmp_path: Path) -> None:
    # One trial at a time, 2 epochs, one ASHA rung at epoch 1 that keeps the top 1/4: with eta spanning three
    # decades the later trials meet a recorded rung and the weaker ones stop there.
    args = [*TINY_SEARCH, f"job.data.root={tiny_dataset}", "job.unified.epochs=2", "search.name=t3",
            "search.num_samples=3", "search.max_concurrent_trials=1", "search.grace_period=1",
            "search.reduction_factor=4", "search.eta1=[0.01, 10]", "search.eta2=[0.01, 10]",
            f"search.storage_path={tmp_path / 'tune'}", "job.run.ray_num_cpus=4"]
    exp = tmp_path / "tune" / "t3"
    # The command, as a user runs it, stopped like Ctrl+C once its first trial has finished.
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(REPO / "tune" / "tune_loss_weights.py"), *args], env=env,
                            cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    progress = exp / PROGRESS_FILE
    deadline = time.time() + 420
    while not (progress.exists() and progress.read_text().strip()) and proc.poll() is None:
        assert time.time() < deadline, "the first trial did not finish in time"
        time.sleep(1)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGINT)  # Tune saves its state and stops
    log = proc.communicate(timeout=180)[0]
    assert proc.returncode == 3, log[-3000:]
    assert "interrupted" in log and f"--resume {exp}" in log
    first = progress.read_text().split()
    assert len(first) == 1

    # Resumed (`--resume` calls this) on a Ray whose state API this test can ask about placement groups.
    ray = request.getfixturevalue("ray_with_state_api")
    out = run_search(load_tune_config(None, []), resume=str(exp))
    finished = progress.read_text().split()
    assert len(finished) == 3 and finished[0] == first[0] and finished.count(first[0]) == 1

    df = out["trials"]
    assert len(df) == 3 and set(df["status"]) <= {"completed", "stopped_early"}
    assert (df["status"] == "stopped_early").sum() >= 1, df  # ASHA cut at least one trial short
    assert (df.loc[df["status"] == "stopped_early", "epochs"] < 2).all()
    assert ((df["eta1"] >= 0.01) & (df["eta1"] <= 10) & (df["eta2"] >= 0.01) & (df["eta2"] <= 10)).all()
    # The trainer of a stopped trial released its workers' CPUs: its placement group leaked, and starved the next
    # trial, while Ray Train's cleaner could not reach the state API. The cleaner polls, so allow it a moment.
    deadline = time.monotonic() + 30
    while _live_placement_groups(ray) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _live_placement_groups(ray)
    saved = pd.read_csv(out["csv"])
    assert list(saved["trial_id"]) == list(df["trial_id"])
    best = out["best"]
    completed = df[df["status"] == "completed"]
    assert best["val_uar"] == pytest.approx(completed["best_val_uar"].max())

    client = MlflowClient(mlflow_uri)
    parent = client.get_run(out["parent_run_id"])
    assert parent.data.tags[SEARCH_TAG] == "t3"
    assert parent.data.metrics["best_eta1"] == pytest.approx(best["eta1"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "eta_scatter.png", "tune_config.yaml"} <= artifacts
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_trial = {r.data.tags["tune.trial_id"]: r for r in children if "tune.trial_id" in r.data.tags}  # the latest
    assert set(by_trial) == set(df["trial_id"])
    for _, row in df.iterrows():
        run = by_trial[row["trial_id"]]
        assert float(run.data.params["unified.eta1"]) == pytest.approx(row["eta1"], rel=1e-6)
        assert float(run.data.params["eta2"]) == pytest.approx(row["eta2"], rel=1e-4)
        assert run.data.tags["tune.status"] == row["status"]
        history = client.get_metric_history(run.info.run_id, "val_uar")
        # Per-epoch metrics, one per epoch trained. ASHA's stop arrives after the result it judged: a trainer as fast
        # as this tiny one (no worker churn since session 5) can finish and log the next epoch before its actor is
        # killed, so a stopped trial may hold one epoch more in MLflow than Tune counted, never more than max_t.
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(len(history)))
        assert row["epochs"] <= len(history) <= 2 and (row["status"] == "stopped_early" or len(history) == 2)
        assert run.data.metrics["best_val_uar"] == pytest.approx(row["best_val_uar"])
    assert "final_val_accuracy" in by_trial[best["trial_id"]].data.metrics

    versions = client.search_model_versions("name = 'classemo'")
    assert len(versions) == 1 and versions[0].version == out["registered_version"]
    assert versions[0].tags[SEARCH_TAG] == "t3" and versions[0].tags["classemo.tune_trial"] == best["trial_id"]
    assert versions[0].run_id == by_trial[best["trial_id"]].info.run_id

    client_runs = client.search_runs([parent.info.experiment_id])
    assert len([r for r in client_runs if "mlflow.parentRunId" not in r.data.tags]) == 1  # the search kept its parent
    assert len([r for r in client_runs if r.info.run_name == f"t3-{first[0]}-unified"]) == 1  # trial 1 ran once
