"""`ray job submit --working-dir . -- python jobs/train.py` against `ray start --head` on loopback: SUCCEEDED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture()
def head_node(tmp_path: Path):
    """`ray start --head --block` in its own process group: stopping it stops only this cluster."""
    port, dash = free_port(), free_port()
    log = tmp_path / "ray-start.log"
    # Loopback-only test cluster: token auth off, so the job CLI needs no token file.
    # The venv's bin first on PATH, as for a user with the venv activated: the job's `python` is this one.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=4",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         # Own agent and metrics ports: the defaults clash with any other Ray on the machine (the job agent
         # would then never start and every submission would get "No available agent").
         f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 300  # generous: CI machines have 2 cores
    ok = None
    while time.time() < deadline and proc.poll() is None:
        ok = subprocess.run([RAY, "job", "list", "--address", address], capture_output=True, env=env)
        if ok.returncode == 0:
            break
        time.sleep(3)
    else:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-1500:]}\nray job list: "
                    f"{ok.stderr.decode()[-1500:]}")
    yield address
    os.killpg(proc.pid, 15)
    proc.wait(timeout=60)
    os.environ.pop("RAY_AUTH_MODE", None)


def test_job_submit_runs_the_training_job_to_succeeded(head_node: str, tiny_dataset: Path, tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": tracking, "RAY_USAGE_STATS_ENABLED": "0"}}
    cmd = [RAY, "job", "submit", "--address", head_node, "--working-dir", ".", "--submission-id", "classemo-test",
           "--runtime-env-json", json.dumps(runtime_env), "--", "python", "jobs/train.py", "--config",
           "configs/train_smoke.yaml", f"data.root={tiny_dataset}", "stargan.enabled=false", "unified.epochs=1",
           f"run.storage_path={tmp_path / 'runs'}"]
    for _ in range(40):  # the node's job agent starts after the dashboard answers; submission waits for it
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
        if "No available agent" not in done.stdout + done.stderr:
            break
        time.sleep(5)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status = subprocess.run([RAY, "job", "status", "--address", head_node, "classemo-test"], capture_output=True,
                            text=True)
    assert "succeeded" in (status.stdout + status.stderr).lower()  # "Job 'classemo-test' succeeded"
    assert "test split" in done.stdout and "registered classemo v1" in done.stdout
    assert (tmp_path / "mlflow.db").is_file()  # the driver wrote to the absolute store, not the temp copy
