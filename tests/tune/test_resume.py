"""A search interrupted (SIGINT) after its first trial finished resumes without running that trial again."""

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

from helpers import REPO, TINY_SEARCH
from tune.search import PROGRESS_FILE

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_interrupted_search_resumes_without_rerunning_finished_trials(mlflow_uri: str, tiny_dataset: Path,
                                                                      tmp_path: Path) -> None:
    script = str(REPO / "tune" / "tune_loss_weights.py")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "PYTHONPATH": str(REPO)}
    exp = tmp_path / "tune" / "resume"
    args = [*TINY_SEARCH, f"job.data.root={tiny_dataset}", "job.unified.epochs=1", "search.name=resume",
            "search.num_samples=2", "search.max_concurrent_trials=1", f"search.storage_path={tmp_path / 'tune'}",
            "job.run.ray_num_cpus=4"]
    proc = subprocess.Popen([sys.executable, script, *args], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    progress = exp / PROGRESS_FILE
    deadline = time.time() + 420
    while not (progress.exists() and progress.read_text().strip()) and proc.poll() is None:
        assert time.time() < deadline, "the first trial did not finish in time"
        time.sleep(1)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGINT)  # like Ctrl+C: Tune saves its state and stops
    log = proc.communicate(timeout=180)[0]
    assert proc.returncode == 3, log[-3000:]
    assert "interrupted" in log and f"--resume {exp}" in log
    first = progress.read_text().split()
    assert len(first) == 1

    proc = subprocess.run([sys.executable, script, "--resume", str(exp)], env=env, cwd=tmp_path, text=True,
                          capture_output=True, timeout=480)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    finished = progress.read_text().split()
    assert len(finished) == 2 and finished[0] == first[0] and finished.count(first[0]) == 1
    df = pd.read_csv(exp / "trials.csv")
    assert sorted(df["trial_id"]) == sorted(finished) and (df["status"] == "completed").all()

    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("classemo").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1  # the resumed search kept its parent run
    trial_runs = [r for r in runs if r.info.run_name == f"resume-{first[0]}-unified"]
    assert len(trial_runs) == 1  # the finished trial's training was not run again
