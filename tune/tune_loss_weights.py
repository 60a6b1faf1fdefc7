"""Ray Tune search of the loss weights eta1 (M_B, ViT head) and eta2 (M_Y, NetVLAD head), tracked in MLflow.

    python tune/tune_loss_weights.py                                  # embedded default: 6 trials, ASHA, synthetic
    python tune/tune_loss_weights.py --config configs/tune_default.yaml search.num_samples=12 job.unified.epochs=6
    python tune/tune_loss_weights.py --resume runs/tune/classemo-tune-eta      # continue a killed search
    ray job submit --working-dir . -- python tune/tune_loss_weights.py

Each Tune trial runs the training job's driver (`jobs.train.run_training`): one TorchTrainer per trial, named
`<search>-<trial id>` so that a restored trial resumes from its own checkpoints, with `TuneReportCallback`
forwarding every epoch's metrics to Tune (Optuna TPE proposes eta1/eta2, ASHA stops weak trials early).
MLflow gets one parent run for the search and one child run per trial; the best trial's model is registered.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

if __package__ in (None, ""):  # `python tune/tune_loss_weights.py`: make `jobs`, `tune` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator  # noqa: E402

from classemo.config import ConfigError, JobConfig, load_config  # noqa: E402
from jobs import train as job_train  # noqa: E402

# Metrics the unified trainer reports every epoch that are "higher is better" (jobs/stages.py: `val_` prefix on
# classemo.metrics.classification_metrics). Short names are accepted too.
REPORTED_METRICS = ("val_uar", "val_accuracy", "val_war")
METRIC_ALIASES = {"uar": "val_uar", "accuracy": "val_accuracy", "acc": "val_accuracy", "war": "val_war"}
SEARCH_FILE = "classemo_search.json"  # search config + MLflow parent run id, beside Tune's experiment state
PROGRESS_FILE = "completed_trials.txt"  # one finished trial id per line (written as trials end)
SEARCH_TAG = "classemo.search"
STATE_API_TIMEOUT_S = 20  # a worker's first state API call answers in a second or two (plus the worker's start)


class SearchError(ValueError):
    """A search that cannot start (bad range, unknown metric, missing experiment); the message says why."""


class SearchInterrupted(RuntimeError):
    """Tune stopped on SIGINT (or SIGUSR1) before every trial finished; the state is saved for `--resume`."""


class Dimension(BaseModel):
    """One extra search dimension: exactly one of loguniform / uniform ([low, high]) or choice ([values])."""

    model_config = ConfigDict(extra="forbid")
    loguniform: list[float] | None = None
    uniform: list[float] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Dimension":
        kinds = [k for k in ("loguniform", "uniform", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of loguniform/uniform/choice, got {kinds or 'none'}")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        for k in ("loguniform", "uniform"):
            if getattr(self, k) is not None:
                _check_range(getattr(self, k), k, positive=k == "loguniform")
        return self


def _check_range(r: Sequence[float], what: str, *, positive: bool) -> None:
    if len(r) != 2:
        raise ValueError(f"{what} range must be [low, high], got {list(r)}")
    lo, hi = float(r[0]), float(r[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{what} range {list(r)} is not finite")
    if lo > hi:
        raise ValueError(f"{what} range [{lo}, {hi}] is reversed (low > high)")
    if lo == hi:
        raise ValueError(f"{what} range [{lo}, {hi}] is empty (low == high)")
    if positive and lo <= 0:
        raise ValueError(f"{what} range [{lo}, {hi}] is log-uniform, so low must be > 0")


class SearchConfig(BaseModel):
    """What to search and how: the `search:` section of a tune config."""

    model_config = ConfigDict(extra="forbid")
    name: str = "classemo-tune-eta"  # Tune experiment name (its folder under storage_path) and MLflow parent run
    num_samples: int = Field(6, ge=1)  # trials
    metric: str = "val_uar"  # val_uar (default) or val_accuracy (= val_war), maximised
    eta1: list[float] = [0.05, 2.0]  # log-uniform range of the M_B weight
    eta2: list[float] = [0.05, 2.0]  # log-uniform range of the M_Y weight
    extra: dict[str, Dimension] = {}  # more dimensions: job config path -> {loguniform|uniform|choice: ...}
    grace_period: int = Field(1, ge=1)  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: float = Field(2.0, gt=1.0)  # ASHA: keep the top 1/reduction_factor at each rung
    max_concurrent_trials: int = Field(0, ge=0)  # 0: as many as the cluster's CPUs fit
    trial_cpus: float = Field(0.1, gt=0)  # the trial's driver process only; its trainer workers ask for their own
    storage_path: str = "runs/tune"  # Tune experiment state (local dir made absolute, or s3://)
    register_best: bool = True  # register the best trial's model as a version of `job.run.registered_name`
    seed: int = 0  # TPE sampler seed

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        v = METRIC_ALIASES.get(v, v)
        if v not in REPORTED_METRICS:
            raise ValueError(f"metric {v!r} is not one the trainer reports; choose one of {list(REPORTED_METRICS)} "
                             f"(or {sorted(METRIC_ALIASES)})")
        return v

    @field_validator("eta1", "eta2")
    @classmethod
    def _eta_range(cls, v: list[float], info: Any) -> list[float]:
        _check_range(v, info.field_name, positive=True)
        return [float(v[0]), float(v[1])]


class TuneJobConfig(BaseModel):
    """A whole tune config: `search:` plus the training job's sections under `job:`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    search: SearchConfig
    job: Any  # classemo.config.JobConfig


# Embedded default: the tiny preset on the synthetic sample, short enough for 6 trials in ~15 min on 2 cores.
DEFAULT_JOB = {
    "data": {"root": "data/sample_tune", "synth_clips_per_class": 10, "synth_num_frames": 4, "synth_image_size": 32,
             "num_frames": 4, "image_size": 32, "batch_size": 8},
    "stargan": {"enabled": False},
    "unified": {"epochs": 4, "warmup_epochs": 0,
                "model_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_clusters": 4,
                                 "temporal_depth": 1, "temporal_heads": 2, "patch_size": 8}},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1.0},
    "run": {"num_to_keep": 1},
}


# ------------------------------------------------------------------------------------------------------ config


def _set_path(d: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():  # model_kwargs is replaced whole, like in classemo.config
        deep = isinstance(v, dict) and isinstance(out.get(k), dict) and k != "model_kwargs"
        out[k] = _merge(out[k], v) if deep else v
    return out


def load_tune_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TuneJobConfig:
    """Embedded defaults, then a YAML file (`search:` and `job:` sections), then `search.x=...`/`job.y.z=...`.

    Raises:
        SearchError: Unknown keys, bad types, an empty or reversed range, or a metric the trainer never reports.
    """
    search: dict[str, Any] = {}
    job_dict = JobConfig().to_dict()
    for section, values in DEFAULT_JOB.items():
        job_dict[section].update(values)
    loaded: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise SearchError(f"tune config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise SearchError(f"tune config file {p} is not valid YAML: {e}") from None
        if not isinstance(loaded, dict) or set(loaded) - {"search", "job"}:
            raise SearchError(f"tune config file {p} must hold the sections 'search' and/or 'job', got "
                              f"{sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__}")
    search.update(loaded.get("search") or {})
    job_overrides = []
    for text in overrides:
        key = text.split("=", 1)[0]
        if key.startswith("search."):
            if "=" not in text:
                raise SearchError(f"override {text!r} is not of the form search.key=value")
            _set_path(search, key[len("search."):], yaml.safe_load(text.split("=", 1)[1]))
        elif key.startswith("job."):
            job_overrides.append(text[len("job."):])
        else:
            raise SearchError(f"override {text!r} must start with 'search.' or 'job.'")
    try:
        job = load_config(None, job_overrides, base=JobConfig.from_dict(_merge(job_dict, loaded.get("job") or {})))
        cfg = SearchConfig(**search)
    except ConfigError as e:
        raise SearchError(f"job config: {e}") from None
    except ValidationError as e:
        raise SearchError("search config: " + "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'search'}: {err['msg']}" for err in e.errors())) from None
    for key in cfg.extra:  # every extra dimension must name a real job config field
        dim = cfg.extra[key]
        probe = (dim.loguniform or dim.uniform or dim.choice)[0]
        try:
            load_config(None, [f"{key}={json.dumps(probe)}"], base=job)
        except ConfigError as e:
            raise SearchError(f"search.extra[{key!r}] is not a usable job config key: {e}") from None
    if not job.unified.enabled:
        raise SearchError("job.unified.enabled is false: there is nothing to tune")
    return TuneJobConfig(search=cfg, job=job)


def param_space(cfg: SearchConfig) -> dict[str, Any]:
    """Tune's search space: eta1/eta2 log-uniform plus the extra dimensions (keys are job config paths)."""
    from ray import tune

    space: dict[str, Any] = {"unified.eta1": tune.loguniform(*cfg.eta1), "unified.eta2": tune.loguniform(*cfg.eta2)}
    for key, dim in cfg.extra.items():
        if dim.loguniform is not None:
            space[key] = tune.loguniform(*dim.loguniform)
        elif dim.uniform is not None:
            space[key] = tune.uniform(*dim.uniform)
        else:
            space[key] = tune.choice(list(dim.choice or []))
    return space


def concurrent_trials(cfg: SearchConfig, job: JobConfig, cluster_cpus: float) -> int:
    """Trials that fit at once: each takes its driver's CPUs plus its workers'; one CPU stays for Ray Data."""
    if cfg.max_concurrent_trials:
        return min(cfg.max_concurrent_trials, cfg.num_samples)
    per_trial = cfg.trial_cpus + job.scaling.num_workers * job.scaling.cpus_per_worker
    fit = int((cluster_cpus - 1.0 + 1e-9) // per_trial)
    if fit < 1:
        raise SearchError(f"one trial needs {per_trial:g} CPUs plus 1 for Ray Data, but the cluster has "
                          f"{cluster_cpus:g}; lower job.scaling.num_workers/cpus_per_worker")
    return min(fit, cfg.num_samples)


# ------------------------------------------------------------------------------------------------- the trial


def trial_job(job: dict[str, Any], params: dict[str, Any], search_name: str, trial_id: str) -> JobConfig:
    """The job config of one trial: the search's job with the sampled values set (validated like overrides)."""
    data = json.loads(json.dumps(job))
    for key, value in params.items():
        _set_path(data, key, value)
    cfg = JobConfig.from_dict(data)
    cfg.run.name = f"{search_name}-{trial_id}"
    cfg.run.register = False
    cfg.stargan.enabled = False
    return cfg


def run_trial(config: dict[str, Any], *, job: dict[str, Any], search_name: str, parent_run_id: str,
              models_dir: str, metric: str) -> None:
    """Tune's driver function: one TorchTrainer run of the unified model with the sampled loss weights.

    The trainer reports every epoch to Tune through `TuneReportCallback` (ASHA may stop the trial there). When the
    trial runs to the end, its best model is copied to `models_dir/<trial id>/model` for registration.
    """
    import mlflow
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_job(job, config, search_name, trial_id)
    stage = job_train.run_training(cfg, generator_dir=cfg.stargan.checkpoint, parent_run_id=parent_run_id,
                                   callbacks=[TuneReportCallback()], name=cfg.run.name)
    dest = Path(models_dir) / trial_id
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(Path(stage.checkpoint_dir) / "model", dest / "model")
    (dest / "metrics.json").write_text(json.dumps(stage.metrics, indent=1, default=float))
    shutil.rmtree(stage.checkpoint_dir, ignore_errors=True)
    if stage.run_id:
        values = [h.get(metric) for h in stage.history if h.get(metric) is not None]
        final = {f"final_{k}": float(v) for k, v in (stage.history[-1] if stage.history else {}).items()
                 if k.startswith("val_") and isinstance(v, (int, float))}
        final[f"best_{metric}"] = max(values) if values else float("nan")
        client = MlflowClient(cfg.run.tracking_uri)
        client.log_batch(stage.run_id, metrics=[mlflow.entities.Metric(k, v, int(time.time() * 1000), 0)
                                                for k, v in final.items() if math.isfinite(v)])
        client.set_tag(stage.run_id, "tune.model_dir", str(dest / "model"))


# ------------------------------------------------------------------------------------------------- the search


def _progress_callback(path: Path) -> Any:
    """A Tune callback that appends each finished trial's id to `path` (watchers and tests read it)."""
    from ray.tune import Callback

    class _Progress(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            with open(path, "a") as f:
                f.write(trial.trial_id + "\n")

    return _Progress()


def _asha(*, max_t: int, grace_period: int, reduction_factor: float) -> Any:
    """ASHA over epochs where ties do not promote, and that never stops a trial at its last epoch.

    Ties: Ray's ASHA stops a trial only if it is strictly below the rung's cutoff, so on a small validation split,
    where accuracy and UAR move in steps of one clip and trials often tie, it stopped nothing. ASHA promotes the
    top 1 / reduction_factor; a trial that only equals the cutoff set by earlier trials is not in it and stops.
    Last epoch: Tune stops a trial by killing its actor, so a trial stopped at max_t (ASHA's default) lost its
    driver before `run_trial` saved the trial's model and final metrics; there the trial ends by itself anyway.
    """
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    class _TiesDoNotPromote(_Bracket):
        def on_result(self, trial: Any, cur_iter: int, cur_rew: float | None) -> str:
            for milestone, recorded in self._rungs:
                if cur_iter < milestone or trial.trial_id in recorded:
                    continue
                cutoff = self.cutoff(recorded)
                if cur_rew is not None and cutoff is not None and cur_rew == cutoff:
                    recorded[trial.trial_id] = cur_rew
                    return TrialScheduler.STOP
                break
            return super().on_result(trial, cur_iter, cur_rew)

    class _LetLastEpochFinish(ASHAScheduler):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._brackets = [_TiesDoNotPromote(grace_period, max_t, reduction_factor, s=i)
                              for i in range(len(self._brackets))]

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            action = super().on_trial_result(tune_controller, trial, result)
            return TrialScheduler.CONTINUE if result.get("training_iteration", 0) >= max_t else action

    return _LetLastEpochFinish(time_attr="training_iteration", max_t=max_t, grace_period=grace_period,
                               reduction_factor=reduction_factor)


def _trainable(tc: TuneJobConfig, parent_run_id: str, exp_dir: str) -> Any:
    import ray.cloudpickle
    from ray import tune

    import jobs.data
    import jobs.stages

    # Trial actors (on any node) unpickle these by value, so the repo need not be importable there.
    for module in (sys.modules[__name__], job_train, jobs.data, jobs.stages):
        if module.__name__ != "__main__":
            ray.cloudpickle.register_pickle_by_value(module)
    fn = tune.with_parameters(run_trial, job=tc.job.to_dict(), search_name=tc.search.name,
                              parent_run_id=parent_run_id, models_dir=str(Path(exp_dir) / "models"),
                              metric=tc.search.metric)
    return tune.with_resources(fn, {"CPU": tc.search.trial_cpus})


def check_state_api() -> None:
    """Fail before any trial starts if the cluster's workers cannot reach Ray's state API.

    ASHA stops a trial by killing its actor, and with it the trial's TorchTrainer controller. The controller's
    worker placement group outlives it (a placement group lives as long as the job that created it), and only
    Ray Train's PlacementGroupCleaner removes it, once the state API says the controller is dead. Without the
    state API (Ray started without its dashboard), or at a wrong address (several Ray instances on one machine),
    every stopped trial keeps its workers' CPUs until the search ends, and later trials starve. The probe runs
    in a worker, so it finds the state API the way the cleaner does.

    Raises:
        SearchError: The state API is not reachable from inside the cluster; the message says how to fix it.
    """
    import ray

    @ray.remote(num_cpus=0)
    def probe() -> str:
        from ray.util.state import list_nodes

        try:
            list_nodes(limit=1, timeout=10)
        except Exception as e:  # what the cleaner would hit: ConnectionError, ServerUnavailable, ValueError
            return f"{type(e).__name__}: {e}"
        return ""

    ref = probe.remote()
    try:
        error = ray.get(ref, timeout=STATE_API_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:  # e.g. no address to find: Ray's own resolution retries for ~40 s
        ray.cancel(ref, force=True)
        error = f"no answer in {STATE_API_TIMEOUT_S} s"
    if error:
        raise SearchError(
            "Ray's state API is not reachable from the cluster's workers, so Ray Train could not free the CPUs of "
            "trials that ASHA stops and later trials would hang. Leave job.run.ray_address and RAY_ADDRESS empty "
            "to let this command start a local Ray that has it, or start the cluster with its dashboard (and, "
            "with several Ray instances on one machine, set RAY_API_SERVER_ADDRESS=http://<host>:<dashboard "
            f"port> in its workers' environment). The probe said: {error[:500]}")


def _storage(tc: TuneJobConfig) -> str:
    p = tc.search.storage_path
    return p if "://" in p else str(Path(p).expanduser().resolve())


def run_search(tc: TuneJobConfig, *, resume: str = "", stopper: Any = None) -> dict[str, Any]:
    """Run (or, with `resume`, continue) a search; log it to MLflow, register the best model, return the summary.

    Args:
        tc: The validated tune config (`load_tune_config`).
        resume: Experiment folder of an interrupted search (`<storage_path>/<name>`): Tune restores it and runs
            only the trials that had not finished; the search keeps its MLflow parent run.
        stopper: Optional Tune stopper (tests).

    Returns:
        `best` (eta1, eta2, metric value, trial id), `trials` (DataFrame), `csv`, `parent_run_id`,
        `registered_version`, `seconds`, `experiment_path`.
    """
    import mlflow
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch
    import optuna

    t0 = time.perf_counter()
    if resume:
        exp_dir = Path(resume).expanduser().resolve()
        saved = exp_dir / SEARCH_FILE
        if not saved.is_file():
            raise SearchError(f"{exp_dir} is not a classemo search to resume (no {SEARCH_FILE})")
        state = json.loads(saved.read_text())
        tc = TuneJobConfig(search=SearchConfig(**state["search"]), job=JobConfig.from_dict(state["job"]))
        parent_run_id = state["parent_run_id"]
    job = job_train.resolve_paths(tc.job)
    info = job_train.ensure_dataset(job)  # fails (JobError) before any trial starts
    if not resume:
        exp_dir = Path(_storage(tc)) / tc.search.name
        if (exp_dir / SEARCH_FILE).exists():
            raise SearchError(f"a search named {tc.search.name!r} already exists at {exp_dir}: resume it with "
                              f"--resume {exp_dir}, or choose another search.name")
    job_train.init_ray(job, state_api=True)
    check_state_api()
    job_train.quiet_data()
    import ray

    mlflow.set_tracking_uri(job.run.tracking_uri)
    mlflow.set_experiment(job.run.experiment)
    if not resume:
        with mlflow.start_run(run_name=tc.search.name, tags={SEARCH_TAG: tc.search.name}) as parent:
            parent_run_id = parent.info.run_id
            mlflow.log_params({f"search.{k}": str(v)[:500] for k, v in tc.search.model_dump().items()})
            mlflow.log_text(yaml.safe_dump({"search": tc.search.model_dump(), "job": job.to_dict()},
                                           sort_keys=False), "tune_config.yaml")
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / SEARCH_FILE).write_text(json.dumps({"search": tc.search.model_dump(), "job": job.to_dict(),
                                                       "parent_run_id": parent_run_id}, indent=1))
    tc = TuneJobConfig(search=tc.search, job=job)
    trainable = _trainable(tc, parent_run_id, str(exp_dir))
    callbacks = [_progress_callback(exp_dir / PROGRESS_FILE)]
    if resume:
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        s = tc.search
        cpus = ray.cluster_resources().get("CPU", 0.0)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(s),
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=s.seed)),
                scheduler=_asha(max_t=job.unified.epochs, grace_period=min(s.grace_period, job.unified.epochs),
                                reduction_factor=s.reduction_factor),
                metric=s.metric, mode="max", num_samples=s.num_samples,
                max_concurrent_trials=concurrent_trials(s, job, cpus),
            ),
            run_config=tune.RunConfig(name=s.name, storage_path=str(exp_dir.parent), callbacks=callbacks,
                                      stop=stopper, verbose=1),
        )
    results = tuner.fit()
    unfinished = _unfinished(exp_dir, tc.search.num_samples)
    if unfinished:
        raise SearchInterrupted(f"the search was interrupted with {len(unfinished)} trial(s) unfinished "
                                f"({', '.join(unfinished)}); continue it with --resume {exp_dir}")
    out = summarize(tc, results, exp_dir, parent_run_id, info)
    out["seconds"], out["metric"] = time.perf_counter() - t0, tc.search.metric
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metric("search_seconds", out["seconds"])
    return out


def _unfinished(exp_dir: Path, num_samples: int) -> list[str]:
    """Trials not yet run to an end, per the saved experiment state: after SIGINT `Tuner.fit` returns normally.

    The state on disk is what `Tuner.restore` resumes from; it is written before Tune stops the running trials
    (which then read TERMINATED in memory), so it still says RUNNING/PENDING for the interrupted ones.
    """
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    trials = ExperimentAnalysis(str(exp_dir)).trials
    left = [t.trial_id for t in trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]
    return left + [f"not started #{i + 1}" for i in range(num_samples - len(trials))]


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

    from classemo.mlflow_model import log_model, register_and_promote
    from classemo.evaluate import evaluate_dataset
    from jobs.data import first_clip_frames

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
        metrics = json.loads((model_dir.parent / "metrics.json").read_text())
        with mlflow.start_run(run_id=best_run.info.run_id, nested=True):
            model_info = log_model(str(model_dir), first_clip_frames(info, "val"))

        def score_champion(uri: str) -> float:
            return float(evaluate_dataset(uri, job.data.root, split="val")["accuracy"])

        promo = register_and_promote(model_info.model_uri, score=float(metrics.get("val_accuracy", float("nan"))),
                                     split_id=job_train._split_id(info, "val"), name=job.run.registered_name,
                                     evaluate_champion=score_champion, client=client)
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
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(out["trials"].to_string(index=False))
    b = out["best"]
    print(f"best trial {b['trial_id']}: eta1={b['eta1']:.4g} eta2={b['eta2']:.4g} {metric}={b[metric]:.4f}")
    if "registered_version" in out:
        print(f"registered classemo v{out['registered_version']} (tag {SEARCH_TAG})")
    print(f"trials table: {out['csv']}; Tune experiment: {out['experiment_path']}; MLflow parent run "
          f"{out['parent_run_id']}; search took {out['seconds']:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    from jobs.data import DatasetError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="YAML with a 'search' section and a 'job' section (the training job's config)")
    p.add_argument("--resume", default="", help="experiment folder of an interrupted search to continue")
    p.add_argument("--csv", default="", help="also copy the trials table to this CSV file")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="search.key=value or job.section.key=value, e.g. search.num_samples=3")
    args = p.parse_args(argv)
    try:
        tc = load_tune_config(args.config, args.overrides)
        if args.print_config:
            print(yaml.safe_dump({"search": tc.search.model_dump(), "job": tc.job.to_dict()}, sort_keys=False))
            return 0
        out = run_search(tc, resume=args.resume)
    except (SearchError, ConfigError, job_train.JobError, DatasetError) as e:
        print(f"classemo tune: error: {e}", file=sys.stderr)
        return 2
    except SearchInterrupted as e:
        print(f"classemo tune: {e}", file=sys.stderr)
        return 3
    if args.csv:
        shutil.copyfile(out["csv"], args.csv)
    print_summary(out, out["metric"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
