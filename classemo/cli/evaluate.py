"""`classemo evaluate`: score a model on a dataset split, print it, log it to MLflow, and the NetVLAD ablation.

The scoring, the table and the plots are `classemo.evaluate`'s; this command wires them to options and a run.
"""

from __future__ import annotations

from pathlib import Path

import typer

from classemo.evaluate import evaluate_dataset, format_metrics, log_evaluation, plot_ablation


def evaluate_command(
    model: str = typer.Option(..., "--model", help="checkpoint dir or models:/classemo@champion"),
    data: str = typer.Option(..., "--data", help="dataset root (local or s3://)"),
    split: str = typer.Option("test", help="train, val or test"),
    ablation: bool = typer.Option(False, "--ablation", help="compare with --baseline (NetVLAD off), per class"),
    baseline: str = typer.Option("", "--baseline", help="the same model trained with use_netvlad=false"),
    out: Path = typer.Option(Path("ablation.png"), "--out", help="where --ablation writes the bar chart"),
    log: bool = typer.Option(True, "--log/--no-log", help="log metrics and plots to an MLflow run"),
) -> None:
    """Score a model on a dataset split; print and log accuracy, per-class accuracy, ECE, V/A RMSE and CCC."""
    from classemo.checkpoint import CheckpointError
    from classemo.data.format import DatasetFormatError

    if ablation and not baseline:
        raise typer.BadParameter("--ablation needs --baseline: a model trained with unified.model_kwargs="
                                 "{use_netvlad: false}", param_hint="--baseline")
    try:
        metrics = evaluate_dataset(model, data, split=split)
        base = evaluate_dataset(baseline, data, split=split) if ablation else None
    except (CheckpointError, DatasetFormatError, ValueError, OSError) as e:
        typer.echo(f"classemo evaluate: error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_metrics(metrics, title=f"{model} on {data} [{split}]"))
    if base is not None:
        typer.echo(format_metrics(base, title=f"baseline {baseline} [{split}]"))
        plot_ablation(metrics["per_class_accuracy"], base["per_class_accuracy"], out)
        typer.echo(f"ablation chart: {out}")
    if log:
        import mlflow

        from classemo.data.dataset import inspect_dataset
        from classemo.mlflow_data import log_data_inputs
        from classemo.tracking import tracking_uri, use_experiment

        mlflow.set_tracking_uri(tracking_uri())
        use_experiment("classemo-evaluate")
        with mlflow.start_run(run_name=f"evaluate-{split}") as run:
            mlflow.log_params({"model": model, "data": data, "split": split, "baseline": baseline})
            log_data_inputs(run.info.run_id, inspect_dataset(data, need=(split,)), (split,))
            log_evaluation(metrics, labels=metrics["labels"], prefix=f"{split}_")
            if base is not None:
                mlflow.log_artifact(str(out))
