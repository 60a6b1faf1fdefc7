"""jobs/compare.py end to end on a real local Ray and MLflow: the paper's model, its NetVLAD ablation and one of the
comparison models (the recurrent one) trained for one epoch on the same tiny synthetic data, the table, the plots and
one MLflow child run per model. Each row is a Ray Train run of its own (~35 s here), so the other three comparison
models, whose training under the unified loss tests/models/test_comparison.py covers, are left out.

It lives here, after tests/jobs, on purpose: run in the same pytest process before tests/jobs/test_job_submit.py and
test_multinode_s3.py, it made the two-node test's first Ray Data read fail with OwnerDiedError (its read task's
input owned by the driver, reported as exited). Alone, or after the analysis job, the two-node test passes; the
cause, some state an in-process Ray Train run leaves in the driver across clusters, is not found yet.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from jobs.compare import main, parse_args, run_compare

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SMALL_CLASSEMO = "{embed_dim: 32, depth: 1, num_heads: 2, num_clusters: 4, temporal_depth: 1, temporal_heads: 2}"
CONFIG = f"""
data: {{num_frames: 4, image_size: 32, batch_size: 8, augment: false}}
stargan: {{enabled: false}}
unified: {{epochs: 1, warmup_epochs: 0}}
scaling: {{num_workers: 1, cpus_per_worker: 1.0}}
run: {{name: compare-test}}
compare:
  rows:
    - {{name: classemo, model: classemo_tiny, model_kwargs: {SMALL_CLASSEMO}}}
    - {{name: classemo without NetVLAD, model: classemo_tiny, model_kwargs: {{use_netvlad: false, embed_dim: 32,
        depth: 1, num_heads: 2, num_clusters: 4, temporal_depth: 1, temporal_heads: 2}}}}
    - {{name: CNN-GRU, model: cnn_gru_tiny}}
"""


def test_one_command_gives_tables_1_2_and_figure_5_in_mlflow(ray_cluster, mlflow_uri: str, tiny_dataset: Path,
                                                           tmp_path: Path) -> None:
    config = tmp_path / "compare.yaml"
    config.write_text(CONFIG)
    cc = parse_args(["--config", str(config), f"data.root={tiny_dataset}", f"run.storage_path={tmp_path / 'runs'}",
                     f"compare.out_dir={tmp_path / 'out'}"])
    out = run_compare(cc)

    names = ["classemo", "classemo without NetVLAD", "CNN-GRU"]
    assert [r["model"] for r in out["rows"]] == names
    for row in out["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["uar"] <= 1.0, row
        assert row["params_m"] > 0 and row["gflops_per_clip"] > 0 and row["train_minutes"] > 0
        assert set(row["per_class_accuracy"]) == {"fear", "anger", "disgust", "happy", "sad", "positive", "neutral"}
    folder = Path(out["out_dir"])
    assert {"comparison.md", "comparison.csv", "comparison.png", "netvlad_ablation.png", "rows.json",
            "config.yaml"} <= {p.name for p in folder.iterdir()}
    table = (folder / "comparison.md").read_text()
    assert all(f"| {n} (`" in table for n in names)
    with open(folder / "comparison.csv") as f:
        assert [r["registry"] for r in csv.DictReader(f)] == [r["registry"] for r in out["rows"]]

    client = MlflowClient(mlflow_uri)
    parent = client.get_run(out["parent_run_id"])
    assert parent.data.tags["classemo.compare"] == "true"
    assert {"comparison"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")} >= {
        "comparison/comparison.md", "comparison/comparison.png", "comparison/netvlad_ablation.png"}
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_row = {r.data.tags["classemo.compare_row"]: r for r in children}
    assert set(by_row) == set(names)
    for name, run in by_row.items():
        assert "test_accuracy" in run.data.metrics and "gflops_per_clip" in run.data.metrics, name
        assert run.data.params["unified.epochs"] == "1" and run.data.params["run.seed"] == "0"
    assert by_row["CNN-GRU"].data.params["unified.model"] == "cnn_gru_tiny"
    rows = json.loads((folder / "rows.json").read_text())
    assert len(rows) == 3


def test_bad_config_is_a_message_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("compare: {rows: [{model: resnet_huge}]}\n")
    assert main(["--config", str(config)]) == 2
    assert "unknown model 'resnet_huge'" in capsys.readouterr().err
