"""Ray Train worker functions of the two stages: `unified_train_fn` and `stargan_train_fn`.

These hold the only Ray calls of the loops (`get_dataset_shard`, `prepare_model`, `get_checkpoint`, `report`);
the steps themselves are plain PyTorch in `classemo.training`. Every rank reports once per epoch, always with a
checkpoint from rank 0, because Train V2 keeps only metrics that come with a checkpoint. Rank 0 also logs the
epoch's metrics to the stage's MLflow child run, which the driver created.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

TRAIN_STATE = "train_state.pt"
MODEL_DIR = "model"


def _mean_over_workers(total: float, count: int) -> float:
    """Mean of a per-worker (sum, count) over all workers."""
    t = torch.tensor([total, float(count)], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return float(t[0] / t[1]) if t[1] > 0 else math.nan


def _log_epoch(tracking_uri: str, run_id: str, metrics: dict[str, float], epoch: int) -> None:
    """Per-epoch metrics into the stage's child run (rank 0 only); step = epoch, so a resumed run continues it."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items() if math.isfinite(float(v))]
    MlflowClient(tracking_uri).log_batch(run_id, metrics=batch)


def workers_started() -> int:
    """Ray worker processes started so far on this node: the `python-core-worker-*.log` files of its session.

    Logged per epoch (`ray_workers_started`), so worker churn (processes started and killed while the job runs, which
    cost the cores more than the model did) shows in MLflow; after the first epoch the count should stay flat.
    """
    import ray._private.worker as ray_worker  # the node's log folder has no public accessor

    node = getattr(ray_worker, "_global_node", None)
    if node is None:
        return -1
    return len(list(Path(node.get_logs_dir_path()).glob("python-core-worker-*.log")))


def _num_nodes(world: int) -> int:
    """How many distinct Ray nodes the worker group spans (reported, so placement can be checked)."""
    node = ray.get_runtime_context().get_node_id()
    if world == 1 or not (dist.is_available() and dist.is_initialized()):
        return 1
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, node)
    return len(set(nodes))


def _maybe_fail(config: dict[str, Any], epoch: int, step: int, rank: int, world: int) -> None:
    """Fault injection for the tests: the last rank raises once, mid-epoch, then never again (a marker file)."""
    run = config["job"]["run"]
    if run["fail_at_epoch"] != epoch or step != 1 or rank != world - 1 or not run["fail_marker"]:
        return
    marker = Path(run["fail_marker"])
    if marker.exists():
        return
    marker.write_text(f"failed at epoch {epoch}, step {step}, rank {rank}\n")
    raise RuntimeError(f"injected failure in epoch {epoch} (tests only: run.fail_at_epoch)")


def _restore(checkpoint: ray.train.Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / TRAIN_STATE, map_location="cpu", weights_only=False)


def unified_train_fn(config: dict[str, Any]) -> dict[str, Any]:
    """Stage 2 worker: train the unified model on this worker's shard, validate on its exact val shard.

    Args:
        config: `job` (JobConfig.to_dict()), `labels` (LabelSet.to_list()), `class_counts`, `tracking_uri`,
            `mlflow_run_id`, `init_state` (ObjectRef of a state dict or None), `generator` (ObjectRef of the
            StarGAN generator checkpoint bytes or None).

    Returns:
        On every rank, the per-epoch history (Ray keeps rank 0's as `Result.return_value`).
    """
    from classemo.config import JobConfig
    from classemo.labels import LabelSet
    from classemo.losses.unified import UnifiedLoss, class_weights_from_counts
    from classemo.metrics import scalar_metrics
    from classemo.models import create_model
    from classemo.checkpoint import save_model_checkpoint
    from classemo.training.unified import UnifiedStep, evaluate_batches, gather_metrics, train_step, warmup_cosine

    job = JobConfig.from_dict(config["job"])
    u, d = job.unified, job.data
    labels = LabelSet.from_list(config["labels"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(job.run.seed + rank)
    device = ray.train.torch.get_device()
    bf16 = job.scaling.bf16

    model = create_model(u.model, num_classes=len(labels), image_size=d.image_size, num_frames=d.num_frames,
                         **u.model_kwargs)
    if config.get("init_state") is not None:
        model.load_state_dict(ray.get(config["init_state"]))
    # UnifiedStep runs the clip and peak forwards in one call, so every parameter gets a gradient each step.
    step_model = ray.train.torch.prepare_model(UnifiedStep(model),
                                               parallel_strategy_kwargs={"find_unused_parameters": False})
    module: UnifiedStep = getattr(step_model, "module", step_model)
    optimizer = torch.optim.AdamW(module.parameters(), lr=u.lr, weight_decay=u.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(u.warmup_epochs, u.epochs))
    weights = class_weights_from_counts(config["class_counts"], u.class_weight_power) if u.balance_classes else None
    loss_fn = UnifiedLoss(eta1=u.eta1, eta2=u.eta2, lambda_t=u.lambda_t, lambda_va=u.lambda_va, va_loss=u.va_loss,
                          class_weights=weights, label_smoothing=u.label_smoothing).to(device)

    start_epoch, history = 0, []
    state = _restore(ray.train.get_checkpoint())
    if state is not None:
        module.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"] + 1, state["history"]

    augmenter = None
    if config.get("generator") is not None and u.stargan_per_clip > 0:
        augmenter = _augmenter(ray.get(config["generator"]), model, device, u.stargan_per_clip, u.stargan_real_ratio)

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard(f"val_{rank}")
    num_nodes = _num_nodes(world)
    for epoch in range(start_epoch, u.epochs):
        t0, total, count, clips = time.perf_counter(), 0.0, 0, 0
        batches = train_shard.iter_torch_batches(batch_size=d.batch_size, device=device,
                                                 prefetch_batches=d.prefetch_batches,
                                                 # blocks come in a new order each epoch; this mixes
                                                 # clips of several blocks in every batch
                                                 local_shuffle_buffer_size=16 * d.batch_size)
        for i, batch in enumerate(batches):
            _maybe_fail(config, epoch, i, rank, world)
            peak_batch = augmenter(batch["peak"], batch["label"]) if augmenter is not None else None
            losses = train_step(step_model, loss_fn, optimizer, batch, peak_batch=peak_batch,
                                grad_clip=u.grad_clip, bf16=bf16)
            n = int(batch["label"].shape[0])
            total, count, clips = total + losses["total"] * n, count + n, clips + n
        scheduler.step()
        train_time = time.perf_counter() - t0
        acc = evaluate_batches(module.model, val_shard.iter_torch_batches(batch_size=d.batch_size, device=device),
                               labels.names, bf16=bf16, device=device)
        val = gather_metrics(acc).compute()
        metrics = {"epoch": epoch, "num_nodes": num_nodes, "ray_workers_started": workers_started(),
                   # CPU seconds of all train workers' processes so far: against the machine's, what Ray costs.
                   "train_worker_cpu_s": _mean_over_workers(time.process_time(), 1) * world,
                   "train_loss": _mean_over_workers(total, count),
                   "train_clips_per_s": _mean_over_workers(clips / max(train_time, 1e-9), 1) * world,
                   "lr": optimizer.param_groups[0]["lr"], **scalar_metrics(val, prefix="val_")}
        history.append(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                save_model_checkpoint(module.model, Path(tmp) / MODEL_DIR, labels=labels,
                                      train_config=job.to_dict(), face=config.get("face"))
                torch.save({"model": module.model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history},
                           Path(tmp) / TRAIN_STATE)
                if config.get("mlflow_run_id"):
                    _log_epoch(config["tracking_uri"], config["mlflow_run_id"], metrics, epoch)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
    return {"history": history}


def _augmenter(generator_bytes: bytes, model: torch.nn.Module, device: torch.device, per_clip: int,
               real_ratio: float) -> Any:
    """Build the M_H batch builder from the stage-1 generator checkpoint (shipped as bytes to every node).

    The peaks it receives are normalised as `model`'s inputs (the decoders use the model's preprocessing), so it
    maps them to StarGAN's range with the same mean and std.
    """
    from classemo.augment import StarGANAugmenter
    from classemo.preprocessing import Preprocessing

    prep = Preprocessing.for_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        _unpack(generator_bytes, Path(tmp))
        return StarGANAugmenter.from_checkpoint(tmp, device=device, per_clip=per_clip, real_ratio=real_ratio,
                                                mean=prep.mean, std=prep.std)


def pack_dir(directory: str | Path) -> bytes:
    """A checkpoint directory as tar bytes, so it can travel through the object store to other nodes."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(Path(directory).iterdir()):
            tar.add(p, arcname=p.name)
    return buf.getvalue()


def _unpack(data: bytes, directory: Path) -> None:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(directory, filter="data")


def stargan_train_fn(config: dict[str, Any]) -> dict[str, Any]:
    """Stage 1 worker: StarGAN on peak frames; validation = D's domain accuracy on G's translations.

    Args:
        config: `job`, `labels`, `tracking_uri`, `mlflow_run_id` (as for `unified_train_fn`).
    """
    from classemo.config import JobConfig
    from classemo.labels import LabelSet
    from classemo.models import create_model
    from classemo.training.stargan import (StarGANTrainConfig, domain_accuracy, make_optimizers, save_stargan,
                                           stargan_step)

    job = JobConfig.from_dict(config["job"])
    s = job.stargan
    labels = LabelSet.from_list(config["labels"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(job.run.seed + rank)
    device = ray.train.torch.get_device()
    model = create_model(s.model, num_domains=len(labels), image_size=job.data.image_size)
    train_cfg = StarGANTrainConfig(lr_g=s.lr, lr_d=s.lr, n_critic=s.n_critic, lambda_cls=s.lambda_cls,
                                   lambda_rec=s.lambda_rec, lambda_gp=s.lambda_gp)

    start_epoch, step, history = 0, 0, []
    state = _restore(ray.train.get_checkpoint())
    if state is None and s.checkpoint:
        # Warm start from a full G+D checkpoint dir (config stargan.checkpoint) when one is given.
        from classemo.checkpoint import load_checkpoint

        warm, _ = load_checkpoint(s.checkpoint)
        model.generator.load_state_dict(warm.generator.state_dict())
        if warm.discriminator is not None:
            model.discriminator.load_state_dict(warm.discriminator.state_dict())
    if state is not None:
        model.load_state_dict(state["model"])
    G = ray.train.torch.prepare_model(model.generator)
    D = ray.train.torch.prepare_model(model.discriminator)
    opt_g, opt_d = make_optimizers(G, D, train_cfg)
    if state is not None:
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start_epoch, step, history = state["epoch"] + 1, state["step"], state["history"]

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard(f"val_{rank}")
    for epoch in range(start_epoch, s.epochs):
        sums = {"d_total": [0.0, 0], "g_total": [0.0, 0], "g_rec": [0.0, 0]}
        for i, batch in enumerate(train_shard.iter_torch_batches(batch_size=s.batch_size, device=device,
                                                                 local_shuffle_buffer_size=4 * s.batch_size)):
            _maybe_fail(config, epoch, i, rank, world)
            out = stargan_step(G, D, opt_g, opt_d, batch["image"], batch["label"], step, train_cfg)
            step += 1
            for k in sums:
                if k in out:
                    sums[k][0] += out[k]
                    sums[k][1] += 1
        correct, seen = 0.0, 0
        for batch in val_shard.iter_torch_batches(batch_size=s.batch_size, device=device):
            n = int(batch["label"].shape[0])
            correct += domain_accuracy(model.discriminator, model.generator, batch["image"], batch["label"]) * n
            seen += n
        metrics = {"epoch": epoch, "val_domain_acc": _mean_over_workers(correct, seen),
                   "ray_workers_started": workers_started(),
                   **{f"train_{k}": _mean_over_workers(*v) for k, v in sums.items()}}
        metrics = {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
        history.append(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                save_stargan(model, Path(tmp) / "generator", labels=labels, train_config=job.to_dict()["stargan"],
                             discriminator_dir=Path(tmp) / "stargan")
                torch.save({"model": model.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                            "epoch": epoch, "step": step, "history": history}, Path(tmp) / TRAIN_STATE)
                if config.get("mlflow_run_id"):
                    _log_epoch(config["tracking_uri"], config["mlflow_run_id"], metrics, epoch)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
    return {"history": history}
