"""What the training job's driver does with a finished stage: gate the generator, log the StarGAN grid, calibrate
(the softmax temperature, fitted on the validation split), evaluate, log and register the unified model, and print
the summary.

Plain MLflow and library code, no Ray: a stage's outcome is a `StageResult` (a checkpoint directory, its metrics and
history, the MLflow child run), which `jobs/train.py` builds from Ray Train's `Result`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classemo.config import JobConfig
from classemo.data.dataset import DatasetInfo


@dataclass
class StageResult:
    """What one stage produced."""

    checkpoint_dir: str  # best checkpoint (local path on the driver)
    metrics: dict[str, Any]  # metrics of that checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = ""  # MLflow child run
    path: str = ""  # Ray Train run directory


def finish_unified(cfg: JobConfig, info: DatasetInfo, stage: StageResult) -> dict[str, Any]:
    """Calibration, test-set evaluation, plots, model logging, registration and the champion alias (driver side).

    The best checkpoint's temperature is fitted on the validation split's clip logits and written into its
    `config.json` before anything reads it, so the test metrics (ECE among them), the exported and the registered
    model all carry calibrated probabilities. Without validation clips it stays uncalibrated (T = 1).
    """
    import mlflow

    from classemo.data.dataset import first_clip_frames, split_id
    from classemo.evaluate import calibrate_checkpoint, evaluate_dataset, log_evaluation
    from classemo.mlflow_model import log_model, publish_model
    from classemo.plots import plot_learning_curves

    model_dir = str(Path(stage.checkpoint_dir) / "model")
    calibration = calibrate_checkpoint(model_dir, cfg.data.root, split="val")
    if calibration is None:
        print("[classemo] no validation clips to fit the softmax temperature on: probabilities stay uncalibrated "
              "(T = 1)", flush=True)
    test = evaluate_dataset(model_dir, cfg.data.root, split="test")
    out: dict[str, Any] = {"test": test, "checkpoint": model_dir, "calibration": calibration}
    if cfg.run.export_model:
        shutil.copytree(model_dir, cfg.run.export_model, dirs_exist_ok=True)
        out["checkpoint"] = cfg.run.export_model
    if not stage.run_id:
        return out
    with mlflow.start_run(run_id=stage.run_id, nested=True):
        log_evaluation(test, labels=list(test["per_class_accuracy"]), prefix="test_")
        if calibration is not None:
            mlflow.log_metrics({"calibration_temperature": calibration["temperature"],
                                "valid_ece_before": calibration["ece_before"],
                                "valid_ece_after": calibration["ece_after"]})
        curves = {k: [h.get(k, float("nan")) for h in stage.history]
                  for k in ("train_loss", "val_accuracy", "val_uar")}
        with tempfile.TemporaryDirectory() as tmp:
            plot_learning_curves(curves, path=Path(tmp) / "learning_curves.png")
            (Path(tmp) / "config.yaml").write_text(cfg.to_yaml())
            mlflow.log_artifacts(tmp)
        example = first_clip_frames(info, "val")
        if not cfg.run.register:
            out["model_uri"] = log_model(model_dir, example).model_uri
            return out
        model_info, promo = publish_model(model_dir, dataset_root=cfg.data.root, split_id=split_id(info, "val"),
                                          input_example=example, name=cfg.run.registered_name)
        mlflow.set_tags({"registered_version": promo.version, "champion_moved": str(promo.promoted)})
        out.update(model_uri=model_info.model_uri, promotion=promo, registered_name=cfg.run.registered_name)
    return out


def gate_generator(cfg: JobConfig, stage: StageResult, parent_run_id: str) -> str:
    """The stage-1 generator for M_H, or "" when D does not recognise its translations often enough.

    The decision is tagged on the job's parent run (`stargan_used_for_m_h`, `stargan_domain_acc`).
    """
    from mlflow.tracking import MlflowClient

    acc = float(stage.metrics.get("val_domain_acc", float("nan")))
    used = acc >= cfg.stargan.min_domain_acc
    client = MlflowClient(cfg.run.tracking_uri)
    client.set_tag(parent_run_id, "stargan_domain_acc", f"{acc:.3f}")
    client.set_tag(parent_run_id, "stargan_used_for_m_h", str(used))
    if not used:
        print(f"[classemo] warning: StarGAN's translations are recognised as their target expression in only "
              f"{acc:.0%} of validation cases (stargan.min_domain_acc = {cfg.stargan.min_domain_acc:.0%}); "
              f"M_H uses the real peak frames only. Train StarGAN longer (stargan.epochs) to use it.", flush=True)
        return ""
    return stage.checkpoint_dir


def log_stargan_grid(cfg: JobConfig, info: DatasetInfo, stage: StageResult) -> None:
    """The StarGAN sample grid (each input translated into every domain) into the stage's child run."""
    import mlflow
    import torch

    from classemo.augment import save_translation_grid
    from classemo.checkpoint import load_checkpoint
    from classemo.data.batches import DecodePeaks
    from classemo.data.dataset import first_rows
    from classemo.plots import plot_learning_curves

    generator, _ = load_checkpoint(stage.checkpoint_dir)
    rows = first_rows(info, "val", 4)
    batch = DecodePeaks(image_size=cfg.data.image_size, train=False, augment=False)(rows)
    with mlflow.start_run(run_id=stage.run_id, nested=True), tempfile.TemporaryDirectory() as tmp:
        save_translation_grid(generator, torch.from_numpy(batch["image"]), torch.from_numpy(batch["label"]),
                              list(info.manifest.label_set.names), Path(tmp) / "stargan_grid.png")
        curves = {k: [h.get(k, float("nan")) for h in stage.history]
                  for k in ("train_d_total", "train_g_total", "val_domain_acc")}
        plot_learning_curves(curves, path=Path(tmp) / "stargan_learning_curves.png")
        mlflow.log_artifacts(tmp)


def print_summary(out: dict[str, Any]) -> None:
    """The job's closing lines: test metrics, registration, where the model and the runs are."""
    from classemo.evaluate import format_metrics

    if "test" in out:
        print(format_metrics(out["test"], title="test split"))
    if out.get("calibration"):
        c = out["calibration"]
        print(f"calibration: temperature {c['temperature']:.3f} fitted on {c['fitted_on']} ({c['num_clips']} clips), "
              f"ECE there {c['ece_before']:.4f} -> {c['ece_after']:.4f}")
    if "promotion" in out:
        p = out["promotion"]
        print(f"registered {out.get('registered_name', 'classemo')} v{p.version}; "
              f"champion {'moved' if p.promoted else 'kept'}: {p.reason}")
    if "checkpoint" in out:
        print(f"best unified model checkpoint: {out['checkpoint']}")
    print(f"MLflow: {out['tracking_uri']} (parent run {out.get('parent_run_id')}); "
          f"job took {out.get('seconds', 0):.0f} s")
