"""The paper's comparison as one run: every model trained on the same data, split, seed and budget on Ray.

    python jobs/compare.py                                  # embedded default: synthetic sample, the six rows
    python jobs/compare.py --config configs/compare.yaml unified.epochs=10
    ray job submit --working-dir . -- python jobs/compare.py --config configs/compare_muxspace.yaml

One MLflow parent run holds a child run per model (its curves, confusion matrix and test metrics) and the
comparison itself: Tables 1-2 side by side (`comparison.md`, `comparison.csv`), `comparison.png` and the NetVLAD
ablation of Figure 5 (`netvlad_ablation.png`). The same files land in `compare.out_dir/<run name>-<time>/`.
Rows and their models are in `classemo.compare`; each row is one `jobs/train.py` unified stage.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # `python jobs/compare.py`: make `jobs` importable like under `ray job submit`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classemo.compare import CompareConfig, CompareRow, load_compare_config  # noqa: E402
from classemo.config import ConfigError, JobConfig  # noqa: E402
from jobs import train as job_train  # noqa: E402


def run_row(base: JobConfig, row: CompareRow, info: Any, *, generator_dir: str, parent_run_id: str) -> dict[str, Any]:
    """Train one row with the job's unified stage, score it on the test split and log it to its child run."""
    import mlflow

    from classemo.compare import model_cost, table_row
    from classemo.evaluate import evaluate_dataset, log_evaluation
    from classemo.models import create_model

    cfg = copy.deepcopy(base)
    cfg.unified.model, cfg.unified.model_kwargs = row.model, dict(row.model_kwargs)
    # Every row trains another architecture from scratch: a start from one model's weights fits none of the others.
    cfg.unified.resume_from = cfg.unified.init_from = ""
    cfg.run.name = f"{base.run.name}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', row.name).strip('-')}"
    print(f"[classemo compare] training {row.name} ({row.model})", flush=True)
    started = time.perf_counter()
    stage = job_train.run_training(cfg, info, generator_dir=generator_dir if row.is_paper_model else "",
                                   parent_run_id=parent_run_id)
    seconds = time.perf_counter() - started
    model_dir = Path(stage.checkpoint_dir) / "model"
    test = evaluate_dataset(str(model_dir), cfg.data.root, split="test")
    d = cfg.data
    model = create_model(row.model, num_classes=len(test["labels"]), image_size=d.image_size,
                         num_frames=d.num_frames, **row.model_kwargs)
    params, gflops = model_cost(model, num_frames=d.num_frames, image_size=d.image_size)
    line = table_row(row, test, params=params, gflops=gflops, train_seconds=seconds)
    with mlflow.start_run(run_id=stage.run_id, nested=True):
        log_evaluation(test, labels=list(test["per_class_accuracy"]), prefix="test_")
        mlflow.log_metrics({"params_m": line["params_m"], "gflops_per_clip": gflops, "train_minutes": seconds / 60})
        mlflow.set_tags({"classemo.compare_row": row.name, "classemo.model": row.model})
        mlflow.log_artifacts(str(model_dir), "model")
    shutil.rmtree(stage.checkpoint_dir, ignore_errors=True)
    print(f"[classemo compare] {row.name}: test accuracy {line['accuracy']:.3f}, UAR {line['uar']:.3f} "
          f"in {seconds / 60:.1f} min", flush=True)
    return line


def write_outputs(cc: CompareConfig, lines: list[dict[str, Any]], out: Path, test_clips: int) -> Path:
    """comparison.md / .csv / .png, netvlad_ablation.png and rows.json under `out`."""
    from classemo.compare import ablation_pair, plot_comparison, to_markdown, write_csv
    from classemo.evaluate import plot_ablation

    out.mkdir(parents=True, exist_ok=True)
    d = cc.job.data
    (out / "comparison.md").write_text(to_markdown(lines, test_clips=test_clips, clip_shape=(d.num_frames,
                                                                                             d.image_size)))
    write_csv(lines, out / "comparison.csv")
    plot_comparison(lines, out / "comparison.png")
    pair = ablation_pair(lines, cc.rows)
    if pair is not None:
        plot_ablation(pair[0], pair[1], out / "netvlad_ablation.png")
    (out / "rows.json").write_text(json.dumps(lines, indent=1, default=float))
    (out / "config.yaml").write_text(cc.job.to_yaml())
    return out


def run_compare(cc: CompareConfig) -> dict[str, Any]:
    """StarGAN once (when enabled, for the paper's rows), then every row; the table in MLflow and on disk."""
    import mlflow

    from classemo.data.dataset import DatasetError
    from classemo.mlflow_data import log_data_inputs
    from classemo.tracking import start_job_run

    cfg = job_train.resolve_paths(cc.job)
    cfg.run.register = False  # a comparison scores models; it does not move the serving champion
    info = job_train.ensure_dataset(cfg)
    job_train.init_ray(cfg)
    mlflow.set_tracking_uri(cfg.run.tracking_uri)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(cc.out_dir).expanduser().resolve() / f"{cfg.run.name}-{stamp}"
    test_clips = int(info.manifest.counts.get("test", 0))
    if test_clips == 0:
        raise DatasetError(f"{cfg.data.root} has no test clips: the comparison scores every model on its test split")
    with start_job_run(experiment=cfg.run.experiment, run_name=cfg.run.name, tags={"classemo.compare": "true"},
                       system_metrics=cfg.run.system_metrics, interval_s=cfg.run.system_metrics_interval_s) as parent:
        job_train.print_tracking(cfg.run.tracking_uri, parent.info.experiment_id, parent.info.run_id)
        mlflow.log_text(cfg.to_yaml(), "config.yaml")
        log_data_inputs(parent.info.run_id, info)
        mlflow.log_dict({"rows": [vars(r) for r in cc.rows]}, "compare_rows.json")
        generator_dir = cfg.stargan.checkpoint
        if cfg.stargan.enabled and any(r.is_paper_model for r in cc.rows):
            stage = job_train.run_stargan(cfg, info, parent_run_id=parent.info.run_id)
            generator_dir = job_train.gate_generator(cfg, stage, parent.info.run_id)
        lines = [run_row(cfg, row, info, generator_dir=generator_dir, parent_run_id=parent.info.run_id)
                 for row in cc.rows]
        write_outputs(cc, lines, out_dir, test_clips)
        mlflow.log_artifacts(str(out_dir), "comparison")
        for line in lines:  # the parent run's metrics: one pair per row, to sort parents in the MLflow UI
            key = re.sub(r"[^A-Za-z0-9_]+", "_", line["model"]).strip("_").lower()
            mlflow.log_metrics({f"{key}_test_accuracy": line["accuracy"], f"{key}_test_uar": line["uar"]})
    return {"rows": lines, "out_dir": str(out_dir), "parent_run_id": parent.info.run_id,
            "tracking_uri": cfg.run.tracking_uri}


def parse_args(argv: Sequence[str] | None = None) -> CompareConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="YAML file: the training job's sections plus `compare: {rows: [...], out_dir}`")
    p.add_argument("--print-config", action="store_true", help="print the resolved job config and rows, then exit")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. unified.epochs=3")
    args = p.parse_args(argv)
    cc = load_compare_config(args.config, args.overrides)
    if args.print_config:
        print(cc.job.to_yaml())
        print("compare rows:\n" + "\n".join(f"  - {r.name}: {r.model} {r.model_kwargs or ''}" for r in cc.rows))
        raise SystemExit(0)
    return cc


def main(argv: Sequence[str] | None = None) -> int:
    from classemo.data.dataset import DatasetError

    try:
        out = run_compare(parse_args(argv))
    except (ConfigError, job_train.JobError, DatasetError) as e:
        print(f"classemo compare: error: {e}", file=sys.stderr)
        return 2
    print((Path(out["out_dir"]) / "comparison.md").read_text())
    print(f"[classemo compare] table, plots and rows in {out['out_dir']}; MLflow parent run {out['parent_run_id']} "
          f"at {out['tracking_uri']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
