"""classemo.compare without Ray: the config, model costs, the table and the plots."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from classemo.compare import (DEFAULT_ROWS, CompareRow, ablation_pair, load_compare_config, model_cost,
                              plot_comparison, table_row, to_markdown, write_csv)
from classemo.config import ConfigError
from classemo.models import create_model


def _write(tmp_path, text: str):
    path = tmp_path / "compare.yaml"
    path.write_text(text)
    return path


def test_default_rows_are_the_paper_model_its_ablation_and_the_four_comparisons() -> None:
    cc = load_compare_config()
    assert [r.model for r in cc.rows] == [r.model for r in DEFAULT_ROWS]
    assert {"cnn_gru_tiny", "lbvcnn_tiny", "convlstm_tiny", "fan_tiny"} <= {r.model for r in cc.rows}
    assert [r.model_kwargs for r in cc.rows if r.model == "classemo_tiny"] == [{}, {"use_netvlad": False}]
    assert cc.rows[0].is_paper_model and not cc.rows[2].is_paper_model


def test_config_file_rows_and_overrides(tmp_path) -> None:
    path = _write(tmp_path, """
unified: {epochs: 3}
compare:
  out_dir: elsewhere
  rows:
    - {name: fan, model: fan_tiny, model_kwargs: {drop_rate: 0.1}}
    - {model: cnn_gru_tiny}
""")
    cc = load_compare_config(path, ["unified.lr=0.01", "compare.out_dir=here"])
    assert cc.job.unified.epochs == 3 and cc.job.unified.lr == 0.01 and cc.out_dir == "here"
    assert cc.rows == [CompareRow("fan", "fan_tiny", {"drop_rate": 0.1}), CompareRow("cnn_gru_tiny", "cnn_gru_tiny")]


@pytest.mark.parametrize("text, message", [
    ("compare: {rows: [{model: nope_tiny}]}", "unknown model 'nope_tiny'"),
    ("compare: {rows: [{name: a, model: fan_tiny}, {name: a, model: lbvcnn_tiny}]}", "distinct names"),
    ("compare: {rows: [{name: a}]}", r"rows\[0\] must be a mapping with at least 'model'"),
    ("compare: {rows: [{model: fan_tiny, epochs: 3}]}", r"unknown key\(s\) \['epochs'\]"),
    ("compare: {colour: red}", r"unknown key\(s\) in compare: \['colour'\]"),
    ("unified: {epochz: 3}", "epochz"),
])
def test_bad_config_is_a_clear_error(tmp_path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_compare_config(_write(tmp_path, text))


def test_model_cost_counts_parameters_and_grows_with_frames() -> None:
    model = create_model("fan_tiny", num_classes=7, image_size=32, num_frames=4)
    params, gflops = model_cost(model, num_frames=4, image_size=32)
    assert params == sum(p.numel() for p in model.parameters())
    _, more = model_cost(model, num_frames=8, image_size=32)
    assert 0 < gflops < more
    assert model.training  # restored


def _line(name: str, model: str, acc: float, uar: float, rmse: float, per_class: dict) -> dict:
    test = {"accuracy": acc, "uar": uar, "valence_rmse": rmse, "valence_ccc": 0.5, "arousal_rmse": rmse,
            "arousal_ccc": float("nan"), "per_class_accuracy": per_class}
    return table_row(CompareRow(name, model, {"use_netvlad": False} if "without" in name else {}), test,
                     params=1_500_000, gflops=0.25, train_seconds=90)


def test_table_marks_the_best_of_each_column_and_keeps_nan_honest(tmp_path) -> None:
    lines = [_line("classemo", "classemo_tiny", 0.8, 0.7, 0.3, {"happy": 0.9, "sad": 0.7}),
             _line("classemo without NetVLAD", "classemo_tiny", 0.6, 0.75, 0.2, {"happy": 0.5, "sad": 0.8}),
             _line("FAN", "fan_tiny", 0.7, 0.6, 0.4, {"happy": 0.6, "sad": 0.6})]
    text = to_markdown(lines, test_clips=42, clip_shape=(4, 48))
    rows = text.splitlines()
    assert rows[0].startswith("| model | accuracy | UAR | valence RMSE")
    assert "| classemo (`classemo_tiny`) | **0.800** | 0.700 | 0.300 |" in text
    assert "| classemo without NetVLAD (`classemo_tiny`) | 0.600 | **0.750** | **0.200** |" in text
    assert "n/a" in rows[2] and "1.50 | 0.250 | 1.5 |" in rows[2] and "42 clips" in text and "4 frames at 48 px" in text
    with open(write_csv(lines, tmp_path / "t.csv")) as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["classemo", "classemo without NetVLAD", "FAN"]
    assert float(table[1]["acc_sad"]) == 0.8 and math.isnan(float(table[0]["arousal_ccc"]))
    png = plot_comparison(lines, tmp_path / "c.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "c.png").stat().st_size == len(png)
    rows_cfg = [CompareRow("classemo", "classemo_tiny"),
                CompareRow("classemo without NetVLAD", "classemo_tiny", {"use_netvlad": False}),
                CompareRow("FAN", "fan_tiny")]
    with_vlad, without = ablation_pair(lines, rows_cfg)
    assert with_vlad == {"happy": 0.9, "sad": 0.7} and without == {"happy": 0.5, "sad": 0.8}
    assert ablation_pair(lines, rows_cfg[2:]) is None


def test_model_cost_of_the_papers_model_runs_the_whole_clip() -> None:
    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=3, image_size=32, num_frames=2, embed_dim=32, depth=1,
                         num_heads=2, num_clusters=4, temporal_depth=1, temporal_heads=2)
    params, gflops = model_cost(model, num_frames=2, image_size=32)
    assert params > 0 and gflops > 0
