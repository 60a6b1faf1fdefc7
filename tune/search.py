"""Running (or resuming) the search: a trial runs the training job's driver; ASHA stops weak trials early."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from classemo.config import JobConfig
from jobs import train as job_train
from tune.config import SearchConfig, SearchError, TuneJobConfig, concurrent_trials, param_space, trial_job
from tune.report import SEARCH_TAG, summarize

SEARCH_FILE = "classemo_search.json"  # search config + MLflow parent run id, beside Tune's experiment state
PROGRESS_FILE = "completed_trials.txt"  # one finished trial id per line (written as trials end)
STATE_API_TIMEOUT_S = 20  # a worker's first state API call answers in a second or two (plus the worker's start)


class SearchInterrupted(RuntimeError):
    """Tune stopped on SIGINT (or SIGUSR1) before every trial finished; the state is saved for `--resume`."""


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

    # Trial actors (on any node) unpickle these by value, so the repo need not be importable there. Registering our
    # `tune` package covers its submodules: this one (run_trial) and tune.config (trial_job).
    for module in (sys.modules[__package__], job_train, jobs.data, jobs.stages):
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
    from classemo.tracking import absolute_output

    return absolute_output(tc.search.storage_path)


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

    from classemo.mlflow_data import log_data_inputs
    from classemo.tracking import start_job_run

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
    metrics = dict(system_metrics=job.run.system_metrics, interval_s=job.run.system_metrics_interval_s)
    if not resume:
        with start_job_run(experiment=job.run.experiment, run_name=tc.search.name, tags={SEARCH_TAG: tc.search.name},
                           system_metrics=False) as parent:
            parent_run_id = parent.info.run_id
            mlflow.log_params({f"search.{k}": str(v)[:500] for k, v in tc.search.model_dump().items()})
            mlflow.log_text(yaml.safe_dump({"search": tc.search.model_dump(), "job": job.to_dict()},
                                           sort_keys=False), "tune_config.yaml")
            log_data_inputs(parent_run_id, info)
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
    # The parent run is active while the trials run, so its system metrics cover the search.
    with start_job_run(experiment=job.run.experiment, run_id=parent_run_id, **metrics) as parent:
        job_train.print_tracking(job.run.tracking_uri, parent.info.experiment_id, parent_run_id)
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

