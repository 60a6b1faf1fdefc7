"""The cluster path as docs/training.md writes it, with Ray's token authentication on as Ray ships it:
`ray get-auth-token --generate`, `ray start --head`, then `RAY_AUTH_MODE=token ray job submit --working-dir . --
python jobs/train.py` (and jobs/analyze.py, and the Serve CLI), on loopback.

HOME is the test's own folder, as a user's home would be: Ray keeps the token in ~/.ray/auth_token, and a submitted
job writes its default MLflow store and outputs under ~/.classemo (Ray's working copy goes with the cluster).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import REPO, free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")


class Head:
    """A `ray start --head --block` node in its own process group, and the environments of its clients."""

    def __init__(self, home: Path, address: str, proc: subprocess.Popen) -> None:
        self.home, self.address, self.proc = home, address, proc

    def env(self, *, token: bool = True) -> dict[str, str]:
        """A user's shell: HOME, the venv first on PATH; with `token`, the one variable the docs say to export."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "MLFLOW_", "CLASSEMO_"))}
        env.update(HOME=str(self.home), RAY_USAGE_STATS_ENABLED="0", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        if token:
            env["RAY_AUTH_MODE"] = "token"
        return env

    def run(self, *args: str, token: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, env=self.env(token=token),
                              timeout=timeout)

    def submit(self, submission_id: str, *entrypoint: str) -> subprocess.CompletedProcess:
        cmd = [RAY, "job", "submit", "--address", self.address, "--working-dir", ".", "--submission-id",
               submission_id, "--", "python", *entrypoint]
        for _ in range(40):  # the node's job agent starts after the dashboard answers; submission waits for it
            done = self.run(*cmd)
            if "No available agent" not in done.stdout + done.stderr:
                return done
            time.sleep(5)
        return done


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    log = home / "ray-start.log"
    port, dash = free_port(), free_port()
    probe = Head(home, f"http://127.0.0.1:{dash}", None)  # type: ignore[arg-type]
    generated = probe.run(RAY, "get-auth-token", "--generate", token=False, timeout=120)
    assert generated.returncode == 0 and (home / ".ray" / "auth_token").is_file(), generated.stderr[-2000:]
    # No RAY_AUTH_MODE for `ray start`: Ray turns token auth on by itself because the token file exists.
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=4",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         # Own agent and metrics ports: the defaults clash with any other Ray on the machine (the job agent
         # would then never start and every submission would get "No available agent").
         f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"],
        cwd=REPO, env=probe.env(token=False), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    node = Head(home, probe.address, proc)
    deadline = time.time() + 300  # generous: CI machines have 2 cores
    ok = None
    while time.time() < deadline and proc.poll() is None:
        ok = node.run(RAY, "job", "list", "--address", node.address, timeout=120)
        if ok.returncode == 0:
            break
        time.sleep(3)
    else:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-1500:]}\nray job list: "
                    f"{ok.stderr[-1500:] if ok else ''}")
    yield node
    # Ray's own graceful stop takes ~35 s on 2 cores; the test's cluster holds nothing worth it.
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


def test_a_client_without_the_token_is_refused(head: Head) -> None:
    refused = head.run(RAY, "job", "list", "--address", head.address, token=False, timeout=120)
    assert refused.returncode != 0 and "authentication" in (refused.stdout + refused.stderr).lower()


def test_job_submit_trains_and_keeps_its_runs(head: Head, tiny_dataset: Path) -> None:
    done = head.submit("classemo-train", "jobs/train.py", "--config", "configs/train_smoke.yaml",
                       f"data.root={tiny_dataset}", "stargan.enabled=false", "unified.epochs=1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status = head.run(RAY, "job", "status", "--address", head.address, "classemo-train", timeout=120)
    assert "succeeded" in (status.stdout + status.stderr).lower()  # "Job 'classemo-train' succeeded"
    assert "test split" in done.stdout and "registered classemo v1" in done.stdout

    # The store the job printed is under ~/.classemo, not in Ray's temporary copy, and holds the runs.
    store = head.home / ".classemo"
    assert f"relative outputs and the default MLflow store go to {store}" in done.stdout
    uri = re.search(r"MLflow: (sqlite:///\S+)", done.stdout).group(1)
    assert uri == f"sqlite:///{store / 'mlflow.db'}"
    assert "runtime_resources" not in uri and (store / "mlflow.db").is_file() and (store / "runs").is_dir()
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("classemo", "champion")
    run = client.get_run(version.run_id)
    contexts = {t.value for di in run.inputs.dataset_inputs for t in di.tags if t.key == "mlflow.data.context"}
    assert contexts == {"train", "val", "test"}
    assert all(json.loads(di.dataset.source)["uri"] == str(tiny_dataset) for di in run.inputs.dataset_inputs)


def test_job_submit_analyses_a_lesson_into_home(head: Head) -> None:
    done = head.submit("classemo-analyze", "jobs/analyze.py", "tests/fixtures/media/single_face.mp4",
                       "--out", "reports", "--no-progress")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 lessons analysed" in done.stdout
    reports = head.home / ".classemo" / "reports"
    assert (reports / "overview.html").is_file() and (reports / "single_face" / "report.html").is_file()


def test_the_serve_cli_reaches_the_cluster_with_the_token(head: Head) -> None:
    """`serve deploy serve/config.yaml` talks to the same dashboard API: with the token it gets through."""
    ok = head.run(str(BIN / "serve"), "status", "--address", head.address, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    refused = head.run(str(BIN / "serve"), "status", "--address", head.address, token=False, timeout=120)
    assert refused.returncode != 0 and "authentication" in (refused.stdout + refused.stderr).lower()
