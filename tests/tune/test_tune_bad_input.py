"""Bad search input fails with a clear message before Ray starts or any trial runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from tune.config import SearchError, load_tune_config, param_space


@pytest.mark.parametrize(("override", "message"), [
    ("search.eta1=[0.5, 0.1]", "eta1 range [0.5, 0.1] is reversed"),
    ("search.eta2=[0.3, 0.3]", "eta2 range [0.3, 0.3] is empty"),
    ("search.eta1=[0.0, 1.0]", "low must be > 0"),
    ("search.eta2=[0.1]", "must be [low, high]"),
    ("search.metric=val_loss", "metric 'val_loss' is not one the trainer reports"),
    ("search.metric=f1", "metric 'f1' is not one the trainer reports"),
    ("search.num_samples=0", "num_samples"),
    ("search.extra={unified.lr: {loguniform: [0.01, 0.001]}}", "loguniform range [0.01, 0.001] is reversed"),
    ("search.extra={unified.nope: {choice: [1, 2]}}", "unified.nope"),
    ("search.bogus=1", "bogus"),
    ("job.unified.epochs=many", "unified.epochs"),
    ("eta1=0.1", "must start with 'search.' or 'job.'"),
])
def test_bad_search_config_is_a_clear_error(override: str, message: str) -> None:
    with pytest.raises(SearchError) as err:
        load_tune_config(None, [override])
    assert message in str(err.value)


def test_valid_config_space_and_aliases() -> None:
    tc = load_tune_config(None, ["search.metric=accuracy", "search.eta1=[0.01, 1]",
                                 "search.extra={unified.lr: {loguniform: [0.0003, 0.003]}, "
                                 "unified.lambda_va: {choice: [0.25, 0.5]}}"])
    assert tc.search.metric == "val_accuracy" and tc.search.eta1 == [0.01, 1.0]
    space = param_space(tc.search)
    assert set(space) == {"unified.eta1", "unified.eta2", "unified.lr", "unified.lambda_va"}
    assert (space["unified.eta1"].lower, space["unified.eta1"].upper) == (0.01, 1.0)
    assert tc.job.unified.model == "classemo_tiny" and not tc.job.stargan.enabled


def test_cli_bad_range_exits_2_before_any_trial(tmp_path: Path) -> None:
    cfg = tmp_path / "tune_bad.yaml"
    cfg.write_text(f"search:\n  eta1: [2.0, 0.5]\n  storage_path: {tmp_path / 'runs'}\n")
    proc = subprocess.run([sys.executable, str(REPO / "tune" / "tune_loss_weights.py"), "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "classemo tune: error: search config: eta1" in proc.stderr and "reversed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_cli_unknown_metric_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tune" / "tune_loss_weights.py"), "search.metric=val_auc",
                           f"search.storage_path={tmp_path / 'runs'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "val_auc" in proc.stderr and "val_uar" in proc.stderr
    assert not (tmp_path / "runs").exists()
