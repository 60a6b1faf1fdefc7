"""A finished search's results: the trials table, per-trial MLflow tags, the eta scatter, the best model registered."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from classemo.config import JobConfig
from tune.config import SearchError, TuneJobConfig

SEARCH_TAG = "classemo.search"  # on the parent run, the trials' child runs and the registered model version


def trial_table(tc: TuneJobConfig, results: Any) -> Any:
    """One row per trial: id, sampled values, status, epochs run, last and best metric."""
    import pandas as pd

    metric, max_t = tc.search.metric, tc.job.unified.epochs
    rows = []
    for r in results:
        hist = r.metrics_dataframe
        values = hist[metric].dropna().tolist() if hist is not None and metric in hist else []
        epochs = int(r.metrics.get("training_iteration", len(values))) if r.metrics else 0
        status = "error" if r.error else ("completed" if epochs >= max_t else "stopped_early")
        row = {"trial_id": r.metrics.get("trial_id", "") if r.metrics else "", **r.config, "status": status,
               "epochs": epochs, f"last_{metric}": values[-1] if values else float("nan"),
               f"best_{metric}": max(values) if values else float("nan")}
        if not row["trial_id"]:
            row["trial_id"] = Path(r.path).name.split("_")[1] if r.path else ""
        rows.append(row)
    df = pd.DataFrame(rows).rename(columns={"unified.eta1": "eta1", "unified.eta2": "eta2"})
    return df.sort_values(f"best_{metric}", ascending=False, na_position="last").reset_index(drop=True)


def _child_runs(job: JobConfig, parent_run_id: str, search_name: str) -> dict[str, Any]:
    """Trial id -> its MLflow child run (the latest, if a restored trial created another)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(job.run.tracking_uri)
    exp = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=10000)
    prefix = f"{search_name}-"
    return {r.info.run_name[len(prefix):-len("-unified")]: r for r in runs
            if r.info.run_name.startswith(prefix) and r.info.run_name.endswith("-unified")}


def plot_scatter(df: Any, metric: str, path: Path) -> None:
    """eta1 x eta2 (log axes), each trial a dot coloured by its best metric; stopped trials red-edged squares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    col = f"best_{metric}"
    done = df["status"] == "completed"
    vmin, vmax = float(df[col].min()), float(df[col].max())
    sc = ax.scatter(df.loc[done, "eta1"], df.loc[done, "eta2"], c=df.loc[done, col], cmap="viridis", s=70,
                    vmin=vmin, vmax=vmax, edgecolors="k", label="completed")
    ax.scatter(df.loc[~done, "eta1"], df.loc[~done, "eta2"], c=df.loc[~done, col], cmap="viridis", s=70,
               vmin=vmin, vmax=vmax, marker="s", edgecolors="r", label="stopped early / error")
    ax.set(xscale="log", yscale="log", xlabel="eta1 (M_B, ViT head)", ylabel="eta2 (M_Y, NetVLAD head)",
           title=f"{col} per trial")
    fig.colorbar(sc, ax=ax, label=col)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(tc: TuneJobConfig, results: Any, exp_dir: Path, parent_run_id: str, info: Any) -> dict[str, Any]:
    """Trial table (printed, CSV), per-trial MLflow tags and final metrics, scatter plot, best-model registration."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from classemo.data.dataset import first_clip_frames, split_id
    from classemo.mlflow_model import publish_model

    s, job = tc.search, tc.job
    metric = s.metric
    df = trial_table(tc, results)
    csv = exp_dir / "trials.csv"
    df.to_csv(csv, index=False)
    client = MlflowClient(job.run.tracking_uri)
    children = _child_runs(job, parent_run_id, s.name)
    for _, row in df.iterrows():
        run = children.get(row["trial_id"])
        if run is None:
            continue
        rid = run.info.run_id
        client.set_tag(rid, "tune.trial_id", row["trial_id"])
        client.set_tag(rid, "tune.status", row["status"])
        client.set_tag(rid, SEARCH_TAG, s.name)
        have = set(run.data.params)
        for key in ("eta1", "eta2"):
            if key not in have:
                client.log_param(rid, key, f"{row[key]:.6g}")
        for key, value in ((f"best_{metric}", row[f"best_{metric}"]), ("epochs_run", row["epochs"])):
            if isinstance(value, (int, float)) and math.isfinite(value):
                client.log_metric(rid, key, float(value))
    completed = df[(df["status"] == "completed") & df[f"best_{metric}"].notna()]
    if completed.empty:
        raise SearchError(f"no trial of search {s.name!r} completed; see {exp_dir} for the trials' errors")
    best = completed.iloc[0]
    out: dict[str, Any] = {"trials": df, "csv": str(csv), "parent_run_id": parent_run_id,
                           "experiment_path": str(exp_dir),
                           "best": {"trial_id": best["trial_id"], "eta1": float(best["eta1"]),
                                    "eta2": float(best["eta2"]), metric: float(best[f"best_{metric}"])}}
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metrics({"best_eta1": out["best"]["eta1"], "best_eta2": out["best"]["eta2"],
                            f"best_{metric}": out["best"][metric],
                            "trials_stopped_early": int((df["status"] == "stopped_early").sum()),
                            "trials_completed": int((df["status"] == "completed").sum())})
        mlflow.set_tag("best_trial_id", best["trial_id"])
        mlflow.log_artifact(str(csv))
        plot_scatter(df, metric, exp_dir / "eta_scatter.png")
        mlflow.log_artifact(str(exp_dir / "eta_scatter.png"))
    model_dir = exp_dir / "models" / best["trial_id"] / "model"
    best_run = children.get(best["trial_id"])
    if s.register_best and best_run is not None and model_dir.is_dir():
        with mlflow.start_run(run_id=best_run.info.run_id, nested=True):
            _, promo = publish_model(str(model_dir), dataset_root=job.data.root, split_id=split_id(info, "val"),
                                     input_example=first_clip_frames(info, "val"), name=job.run.registered_name,
                                     client=client)
        client.set_model_version_tag(job.run.registered_name, promo.version, SEARCH_TAG, s.name)
        client.set_model_version_tag(job.run.registered_name, promo.version, "classemo.tune_trial", best["trial_id"])
        with mlflow.start_run(run_id=parent_run_id):
            mlflow.set_tags({"registered_version": promo.version, "champion_moved": str(promo.promoted)})
        out["registered_version"] = promo.version
        out["promotion"] = promo
    elif s.register_best:  # say so: a silently missing registration hid a trial killed before it saved its model
        print(f"classemo tune: warning: best trial {best['trial_id']} not registered: "
              f"{'no MLflow child run' if best_run is None else f'no saved model at {model_dir}'}", file=sys.stderr)
    return out


def print_summary(out: dict[str, Any], metric: str) -> None:
    """The search's outcome on the terminal: the trials table, the best trial, and where each record went."""
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(out["trials"].to_string(index=False))
    b = out["best"]
    print(f"best trial {b['trial_id']}: eta1={b['eta1']:.4g} eta2={b['eta2']:.4g} {metric}={b[metric]:.4f}")
    if "registered_version" in out:
        print(f"registered classemo v{out['registered_version']} (tag {SEARCH_TAG})")
    print(f"trials table: {out['csv']}; Tune experiment: {out['experiment_path']}; MLflow parent run "
          f"{out['parent_run_id']}; search took {out['seconds']:.0f} s")
