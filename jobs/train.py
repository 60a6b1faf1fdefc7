"""The training job: Ray Data -> Ray Train (StarGAN, then the unified model) -> MLflow.

    python jobs/train.py                                   # embedded default: synthetic sample, classemo_tiny
    python jobs/train.py --config configs/train_tiny.yaml unified.epochs=3 data.root=s3://bucket/ds
    ray job submit --working-dir . -- python jobs/train.py --config configs/train_gpu.yaml

Without a cluster address a local Ray is started with pinned logical CPUs. The driver resolves every path
(dataset, storage, MLflow sqlite) to an absolute one before workers see it: under `ray job submit` the working
directory is a temporary copy, and workers on other nodes have other working directories.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if __package__ in (None, ""):  # `python jobs/train.py`: make `jobs` importable like under `ray job submit`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classemo.config import ConfigError, JobConfig, load_config  # noqa: E402
from classemo.training.results import (StageResult, finish_unified, gate_generator, log_stargan_grid,  # noqa: E402
                                       print_summary)
from jobs.paths import resolve_paths  # noqa: E402,F401 - re-exported: compare and tune resolve through jobs.train

if TYPE_CHECKING:
    from classemo.preprocessing import Preprocessing


class JobError(RuntimeError):
    """A training job that cannot start or finish; the message says why."""


# ---------------------------------------------------------------------------------------------------- helpers


def ensure_dataset(cfg: JobConfig) -> Any:
    """Generate (or reuse) the synthetic sample when asked and the root is local; then check the dataset."""
    from classemo.data.dataset import DatasetError, inspect_dataset

    d = cfg.data
    if d.synth_if_missing and "://" not in d.root and not (Path(d.root) / "manifest.json").exists():
        from classemo.synth.clips import write_synth_dataset

        print(f"[classemo] generating the synthetic sample dataset at {d.root}", flush=True)
        write_synth_dataset(d.root, clips_per_class=d.synth_clips_per_class, num_frames=d.synth_num_frames,
                            image_size=d.synth_image_size, seed=d.synth_seed, subjects=d.synth_subjects,
                            reuse=True)
    try:
        return inspect_dataset(d.root)
    except DatasetError as e:
        raise JobError(str(e)) from None


def local_system_config(num_cpus: int) -> dict[str, Any]:
    """Raylet settings of a locally started Ray.

    Ray keeps at most as many idle workers as there are free CPU slots and kills the rest after 1 s. A training job
    holds its slots with the train workers, so the data tasks' workers went idle between epochs, were killed and
    were started again (importing torch each time) in the next; 4 idle workers per logical CPU, at least 16, stay.
    On a cluster, set the same with `RAY_num_workers_soft_limit` in the environment of `ray start` (cluster.yaml).
    """
    return {"num_workers_soft_limit": max(16, 4 * num_cpus)}


def init_ray(cfg: JobConfig, *, state_api: bool = True) -> None:
    """Join the configured cluster (or RAY_ADDRESS / the job's cluster), else start a local Ray.

    Args:
        cfg: The job config (`run.ray_address`, `run.ray_num_cpus`).
        state_api: Start the local Ray with its dashboard, which serves the state API, and point every worker at
            it. Ray Train's PlacementGroupCleaner asks the state API whether a trainer's controller died; a Tune
            trial stopped early kills its controller, so without the state API the trial's worker placement group
            is never removed. The address is pinned because with several Ray instances on one machine the
            cleaner would otherwise guess one, and it guesses the most recently started. On by default: the
            cleaner polls the state API in every run and floods the log with warnings when it is missing, and
            the dashboard (http://127.0.0.1:<port>, printed) is where a user watches the run.
    """
    import ray

    if ray.is_initialized():
        return
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    # More logical CPUs than cores: workers take fractions and Ray Data's decode tasks need whole slots.
    num_cpus = cfg.run.ray_num_cpus or max(4, 2 * (os.cpu_count() or 1))
    root = str(Path(__file__).resolve().parents[1])
    env_vars = {"PYTHONPATH": root}
    dashboard: dict[str, Any] = {}
    if state_api:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dashboard = {"dashboard_host": "127.0.0.1", "dashboard_port": port}
        env_vars["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    ctx = ray.init(address="local", num_cpus=num_cpus, include_dashboard=state_api, configure_logging=False,
                   runtime_env={"env_vars": env_vars}, _system_config=local_system_config(num_cpus), **dashboard)
    if state_api and ctx.dashboard_url:
        print(f"[classemo] Ray dashboard: http://{ctx.dashboard_url}", flush=True)


def quiet_data() -> None:
    """Ray Data settings of the job's driver, which every dataset it builds carries into its executions.

    - Per-operator progress bars flood job logs (one set per dataset per epoch); the summary is kept.
    - Parquet is read with Ray Data's V1 reader. The V2 reader (the default since Ray 2.5x) starts a pool of
      `FooterReader` actors, each a new Python process, for every execution of a read and kills them when it ends:
      with a training split and one validation split per rank re-read every epoch, that was ~20 worker processes
      started and killed per epoch, which took more of 2 cores than the model did (docs/benchmarks-training.md,
      "Worker churn"). V1 reads in tasks, whose workers the pool keeps and reuses.
    """
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.use_datasource_v2 = False


def resume_state(cfg: JobConfig, manifest: Any, *, announce: bool = False) -> dict[str, Any]:
    """The float32 state dict of `unified.resume_from` or `unified.init_from`, checked against the dataset and the
    configured model. For init_from it is the full state dict of the run's model with the source's weights merged
    in (class heads fresh on other labels), so the workers load it with `strict=True` either way."""
    from classemo.training.resume import ResumeError, init_summary, load_init_state, load_resume_state

    u = cfg.unified
    try:
        if u.init_from:
            state, reinit = load_init_state(u.init_from, manifest=manifest, model_name=u.model,
                                            model_kwargs=u.model_kwargs, data_root=cfg.data.root,
                                            image_size=cfg.data.image_size, num_frames=cfg.data.num_frames,
                                            seed=cfg.run.seed)
            if announce:
                print(init_summary(u.init_from, reinit), flush=True)
            return state
        return load_resume_state(u.resume_from, manifest=manifest, model_name=u.model,
                                 model_kwargs=u.model_kwargs,
                                 data_root=cfg.data.root)
    except ResumeError as e:
        raise JobError(str(e)) from None


def model_preprocessing(cfg: JobConfig, num_classes: int) -> Preprocessing:
    """The unified model's preprocessing, which the decoders must apply: a pretrained backbone brings its own
    mean and std, and the checkpoint records the model's, so training normalises with the same numbers."""
    from classemo.models import create_model
    from classemo.preprocessing import Preprocessing

    u, d = cfg.unified, cfg.data
    return Preprocessing.for_model(create_model(u.model, num_classes=num_classes, image_size=d.image_size,
                                                num_frames=d.num_frames, **u.model_kwargs))


def _stage_result(result: Any, metric: str, run_id: str) -> StageResult:
    if result.error is not None:
        raise JobError(f"training failed: {result.error}")
    best = result.get_best_checkpoint(metric=metric, mode="max") if metric in (result.metrics or {}) else None
    ckpt = best or result.checkpoint
    if ckpt is None:
        raise JobError("training reported no checkpoint")
    local = ckpt.to_directory(tempfile.mkdtemp(prefix="classemo-ckpt-"))
    metrics = next((m for c, m in (result.best_checkpoints or []) if c.path == ckpt.path), result.metrics)
    history = (result.return_value or {}).get("history", [])
    return StageResult(checkpoint_dir=local, metrics=dict(metrics or {}), history=history, run_id=run_id,
                       path=str(result.path))


# ------------------------------------------------------------------------------------------------ the trainers


def build_trainer(cfg: JobConfig, *, train_fn: Any, datasets: dict[str, Any], train_loop_config: dict,
                  name: str, metric: str, callbacks: Sequence[Any] = ()) -> Any:
    """A TorchTrainer with ScalingConfig, checkpointing (best by `metric`) and FailureConfig from `cfg`."""
    import ray.cloudpickle
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    import jobs.data
    import jobs.stages

    # Workers (on any node) unpickle these modules by value, so they need not be importable there.
    for module in (jobs.data, jobs.stages):
        ray.cloudpickle.register_pickle_by_value(module)
    s = cfg.scaling
    resources = {"CPU": s.cpus_per_worker, **({"GPU": s.gpus_per_worker} if s.use_gpu else {})}
    return TorchTrainer(
        train_fn,
        train_loop_config=train_loop_config,
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=cfg.run.storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.run.num_to_keep,
                                                         checkpoint_score_attribute=metric,
                                                         checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            callbacks=list(callbacks) or None,
        ),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )


def _child_run(cfg: JobConfig, parent_run_id: str | None, stage: str, info: Any, splits: Sequence[str]) -> str:
    """A child run of the job's parent run (created by the driver; rank 0 logs into it by id), with its params and
    the dataset splits it trains and is scored on as MLflow dataset inputs."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from classemo.mlflow_data import log_data_inputs

    if parent_run_id is None:
        return ""
    client = MlflowClient(cfg.run.tracking_uri)
    exp = client.get_run(parent_run_id).info.experiment_id
    run = client.create_run(exp, run_name=f"{cfg.run.name}-{stage}",
                            tags={"mlflow.parentRunId": parent_run_id, "classemo.stage": stage})
    params = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in cfg.flat().items()]
    for i in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[i:i + 100])
    log_data_inputs(run.info.run_id, info, splits, client=client)
    return run.info.run_id


def run_training(cfg: JobConfig, info: Any = None, *, generator_dir: str = "", parent_run_id: str | None = None,
                 callbacks: Sequence[Any] = (), name: str = "") -> StageResult:
    """Stage 2: train the unified model with Ray Train; returns the best checkpoint (by val accuracy).

    This is the driver function Ray Tune wraps: pass Tune's callbacks in `callbacks`.

    Args:
        cfg: The resolved job config (call `resolve_paths` first).
        info: `jobs.data.DatasetInfo`; read from `cfg.data.root` when None.
        generator_dir: StarGAN generator checkpoint for the M_H augmentation ("" = real peak frames only).
        parent_run_id: MLflow parent run; a child run "unified" is created under it (None: no MLflow logging).
        callbacks: Extra Ray Train `UserCallback`s.
        name: Ray Train run name; a stable one (e.g. per Tune trial) lets a rerun resume from its checkpoints.
    """
    import ray

    from classemo.data.batches import cache_decision, decoded_bytes
    from classemo.data.dataset import require_soft_labels
    from jobs.data import clip_pipeline, read_split, val_shards
    from jobs.stages import pack_dir, unified_train_fn

    info = info or ensure_dataset(cfg)
    labels = info.manifest.label_set
    init_ray(cfg)
    quiet_data()
    d = cfg.data
    start = cfg.unified.resume_from or cfg.unified.init_from
    init_state = ray.put(resume_state(cfg, info.manifest, announce=True)) if start else None
    generator = ray.put(pack_dir(generator_dir)) if generator_dir else None
    if not generator_dir:
        print("[classemo] no StarGAN generator: M_H uses the real peak frames only", flush=True)
    counts = [info.manifest.label_counts.get("train", {}).get(n, 0) for n in labels.names]
    store = float(ray.cluster_resources().get("object_store_memory", 0.0))
    cache = {}
    for split in ("train", "val"):
        nbytes = decoded_bytes(info.manifest, split, d.image_size)
        cache[split] = cache_decision(d.cache, nbytes, store)
        how = "read and decoded once, kept in the object store" if cache[split] else "streamed, decoded every epoch"
        print(f"[classemo] {split}: {nbytes / 1e6:.1f} MB decoded at {d.image_size} px: {how} (data.cache={d.cache}, "
              f"object store {store / 1e9:.1f} GB)", flush=True)
    prep = model_preprocessing(cfg, len(labels))
    inputs = dict(num_frames=d.num_frames, image_size=d.image_size, map_batch_size=d.map_batch_size, mean=prep.mean,
                  std=prep.std, classroom=d.classroom_augment)
    soft = cfg.unified.soft_labels
    if soft:
        require_soft_labels(info)
    # Only training uses soft labels; validation scores the hard label, as the test metrics do.
    train = clip_pipeline(read_split(info, "train", limit=d.limit_train, soft_labels=soft), train=True,
                          augment=d.augment, cache=cache["train"], soft_classes=len(labels) if soft else 0, **inputs)
    val = {k: clip_pipeline(v, train=False, augment=False, cache=cache["val"], **inputs)
           for k, v in val_shards(read_split(info, "val"), cfg.scaling.num_workers).items()}
    run_id = _child_run(cfg, parent_run_id, "unified", info, ("train", "val", "test"))
    trainer = build_trainer(
        cfg, train_fn=unified_train_fn, datasets={"train": train, **val},
        train_loop_config={"job": cfg.to_dict(), "labels": labels.to_list(), "class_counts": counts,
                           "tracking_uri": cfg.run.tracking_uri, "mlflow_run_id": run_id,
                           "init_state": init_state, "generator": generator, "face": info.manifest.face},
        name=name or f"{cfg.run.name}-unified-{int(time.time())}", metric="val_accuracy", callbacks=callbacks,
    )
    return _stage_result(trainer.fit(), "val_accuracy", run_id)


def run_stargan(cfg: JobConfig, info: Any = None, *, parent_run_id: str | None = None,
                callbacks: Sequence[Any] = ()) -> StageResult:
    """Stage 1: StarGAN on peak frames with Ray Train; returns the best generator (by val domain accuracy).

    The translation grid of a few validation peak frames is logged to the stage's MLflow child run.
    """
    from jobs.data import peak_pipeline, read_split, val_shards
    from jobs.stages import stargan_train_fn

    info = info or ensure_dataset(cfg)
    labels = info.manifest.label_set
    init_ray(cfg)
    quiet_data()
    d = cfg.data
    train = peak_pipeline(read_split(info, "train", limit=d.limit_train), image_size=d.image_size, train=True,
                          augment=d.augment, map_batch_size=d.map_batch_size)
    val = {k: peak_pipeline(v, image_size=d.image_size, train=False, augment=False, map_batch_size=d.map_batch_size)
           for k, v in val_shards(read_split(info, "val"), cfg.scaling.num_workers).items()}
    run_id = _child_run(cfg, parent_run_id, "stargan", info, ("train", "val"))
    trainer = build_trainer(
        cfg, train_fn=stargan_train_fn, datasets={"train": train, **val},
        train_loop_config={"job": cfg.to_dict(), "labels": labels.to_list(), "tracking_uri": cfg.run.tracking_uri,
                           "mlflow_run_id": run_id},
        name=f"{cfg.run.name}-stargan-{int(time.time())}", metric="val_domain_acc", callbacks=callbacks,
    )
    stage = _stage_result(trainer.fit(), "val_domain_acc", run_id)
    stage.checkpoint_dir = str(Path(stage.checkpoint_dir) / "generator")
    if run_id:
        log_stargan_grid(cfg, info, stage)
    return stage


def run_job(cfg: JobConfig) -> dict[str, Any]:
    """The whole job: dataset, MLflow parent run, stage 1 (StarGAN), stage 2 (unified), evaluation."""
    import mlflow

    from classemo.mlflow_data import log_data_inputs
    from classemo.tracking import start_job_run

    cfg = resolve_paths(cfg)
    info = ensure_dataset(cfg)
    if not (cfg.stargan.enabled or cfg.unified.enabled):
        raise JobError("both stages are disabled (stargan.enabled=false, unified.enabled=false): nothing to do")
    if cfg.unified.resume_from or cfg.unified.init_from:
        resume_state(cfg, info.manifest)  # fail before any training starts
    init_ray(cfg)
    mlflow.set_tracking_uri(cfg.run.tracking_uri)
    out: dict[str, Any] = {"tracking_uri": cfg.run.tracking_uri}
    t0 = time.perf_counter()
    with start_job_run(experiment=cfg.run.experiment, run_name=cfg.run.name, system_metrics=cfg.run.system_metrics,
                       interval_s=cfg.run.system_metrics_interval_s) as parent:
        out["parent_run_id"], out["experiment_id"] = parent.info.run_id, parent.info.experiment_id
        print_tracking(cfg.run.tracking_uri, parent.info.experiment_id, parent.info.run_id)
        mlflow.log_text(cfg.to_yaml(), "config.yaml")
        log_data_inputs(parent.info.run_id, info)
        generator_dir = cfg.stargan.checkpoint
        if cfg.stargan.enabled:
            out["stargan"] = run_stargan(cfg, info, parent_run_id=parent.info.run_id)
            generator_dir = gate_generator(cfg, out["stargan"], parent.info.run_id)
        if cfg.unified.enabled:
            out["unified"] = run_training(cfg, info, generator_dir=generator_dir, parent_run_id=parent.info.run_id)
            out.update(finish_unified(cfg, info, out["unified"]))
        out["seconds"] = time.perf_counter() - t0
        mlflow.log_metric("job_seconds", out["seconds"])
    return out


def print_tracking(uri: str, experiment_id: str, run_id: str) -> None:
    """Where the job's runs go, and how to look at them."""
    from classemo.tracking import ui_link

    ui = f"mlflow ui --backend-store-uri {uri}, then " if uri.startswith("sqlite:") else ""
    print(f"[classemo] MLflow: {uri} (parent run {run_id}); {ui}{ui_link(experiment_id, run_id)}", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> JobConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the sections data, stargan, unified, scaling, run")
    p.add_argument("--resume-from", help="start the unified model from this checkpoint dir or models:/ URI")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. unified.epochs=3")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"unified.resume_from={args.resume_from}"] if args.resume_from else [])
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(cfg.to_yaml())
        raise SystemExit(0)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    from classemo.data.dataset import DatasetError

    try:
        cfg = parse_args(argv)
        out = run_job(cfg)
    except (ConfigError, JobError, DatasetError) as e:
        print(f"classemo train: error: {e}", file=sys.stderr)
        return 2
    print_summary(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
