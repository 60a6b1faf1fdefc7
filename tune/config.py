"""The search's config: what to search (`search:`) over which training job (`job:`), checked before Ray starts.

Also the search space and the per-trial job config that Tune's trials are built from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from classemo.config import ConfigError, JobConfig, load_config, merge, read_yaml, set_path, split_override

# Metrics the unified trainer reports every epoch that are "higher is better" (jobs/stages.py: `val_` prefix on
# classemo.metrics.classification_metrics). Short names are accepted too.
REPORTED_METRICS = ("val_uar", "val_accuracy", "val_war")
METRIC_ALIASES = {"uar": "val_uar", "accuracy": "val_accuracy", "acc": "val_accuracy", "war": "val_war"}


class SearchError(ValueError):
    """A search that cannot start (bad range, unknown metric, missing experiment); the message says why."""


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


def load_tune_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TuneJobConfig:
    """Embedded defaults, then a YAML file (`search:` and `job:` sections), then `search.x=...`/`job.y.z=...`.

    Raises:
        SearchError: Unknown keys, bad types, an empty or reversed range, or a metric the trainer never reports.
    """
    search: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    if path:
        try:
            loaded = read_yaml(path, "tune config file")
        except ConfigError as e:
            raise SearchError(str(e)) from None
        if not isinstance(loaded, dict) or set(loaded) - {"search", "job"}:
            raise SearchError(f"tune config file {Path(path)} must hold the sections 'search' and/or 'job', got "
                              f"{sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__}")
    search.update(loaded.get("search") or {})
    job_overrides = []
    for text in overrides:
        key = text.split("=", 1)[0]
        if key.startswith("search."):
            if "=" not in text:
                raise SearchError(f"override {text!r} is not of the form search.key=value")
            try:
                key, value = split_override(text)
            except ConfigError as e:
                raise SearchError(str(e)) from None
            set_path(search, key[len("search."):], value)  # set, not merged: `search.extra={...}` replaces it whole
        elif key.startswith("job."):
            job_overrides.append(text[len("job."):])
        else:
            raise SearchError(f"override {text!r} must start with 'search.' or 'job.'")
    try:
        job_dict = merge(merge(JobConfig().to_dict(), DEFAULT_JOB), loaded.get("job") or {})
        job = load_config(None, job_overrides, base=JobConfig.from_dict(job_dict))
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


def trial_job(job: dict[str, Any], params: dict[str, Any], search_name: str, trial_id: str) -> JobConfig:
    """The job config of one trial: the search's job with the sampled values set (validated like overrides)."""
    data = json.loads(json.dumps(job))
    for key, value in params.items():
        set_path(data, key, value)
    cfg = JobConfig.from_dict(data)
    cfg.run.name = f"{search_name}-{trial_id}"
    cfg.run.register = False
    cfg.stargan.enabled = False
    return cfg
